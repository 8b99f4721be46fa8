"""Fine-tuning: supervised fine-tuning with transformers' Trainer (:mod:`~rdpt.training.sft`), launching it in
this process or under ``accelerate launch`` (:mod:`~rdpt.training.launch`), and the ``distill`` stage."""
