"""Teacher-guided data selection: arms (:mod:`~rdpt.selection.arms`), strategies, the candidates,
select_data, select_run and select_report stages."""
