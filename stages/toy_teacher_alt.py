"""Build the toy world's second, unrelated teacher (GPT-2, own style and tokenizer; never distilled from).

    python stages/toy_teacher_alt.py --out data/toy_alt --report reports/toy_alt.json
"""

import click

from rdpt.cli import params_option, stage
from rdpt.io.artifacts import write_json
from rdpt.models import resolve_device
from rdpt.params import load_params
from rdpt.toy.alt import toy_teacher_alt


@click.command()
@params_option
@click.option("--out", required=True, help="Folder for teacher/ (save_pretrained: weights, tokenizer, template).")
@click.option("--report", required=True, help="JSON report: size, training time and loss, sampled accuracies.")
@stage
def main(params_path, out, report):
    params = load_params(params_path)
    device, _ = resolve_device(params.device, "float32")  # toy models always train in fp32
    write_json(report, toy_teacher_alt(params.toy_alt, params.toy.seed, params.toy.n_test_questions, out,
                                         device=device))


if __name__ == "__main__":
    main()
