"""`alphaprune match`: another ranking's amount whose student measures as fast as the product's.

The product's channel student (`--ranking`, asked for `--amount` of the teacher's time in
`--table`) is the reference, or a student a prune saved (`--student FILE`, of any branch kind:
blocks, blocks+channels, ...), timed as it is; the other ranking's (`--against`,
Torch-Pruning's `global` by default) amount is searched until its student, timed in turns
with the reference in onnxruntime (the table's batch and threads), takes the same time within
`--tolerance` (`alphaprune.pipeline.deploy.match`). It prints each try and the `amount` to give
a variant of that ranking, so that accuracies are compared at equal measured speed; it ends
with an error (exit 2) where no amount comes within the tolerance, naming the nearest. The
amount holds for this table: one measured again plans both rankings anew. Planned students are
timed with the teacher's first channels kept (weights do not change a dense layer's time); run
it with nothing else running."""

from __future__ import annotations

from pathlib import Path

from alphaprune.pipeline.params.base import ConfigError

RANKINGS = ("knapsack", "knapsack_summed", "global")


def add_arguments(p) -> None:
    p.add_argument("--teacher", type=Path, required=True, metavar="FILE", help="a model file")
    p.add_argument(
        "--table", type=Path, required=True, metavar="FILE", help="`alphaprune table`'s file"
    )
    reference = p.add_mutually_exclusive_group(required=True)
    reference.add_argument(
        "--amount",
        type=float,
        help="the reference: the channel student planned for this share of the time removed",
    )
    reference.add_argument(
        "--student",
        type=Path,
        metavar="FILE",
        help="the reference: this student of --teacher (a prune's student.pt), timed as it is",
    )
    p.add_argument(
        "--ranking",
        choices=RANKINGS,
        help="with --amount, the reference's ranking (default: the product's, knapsack_summed)",
    )
    p.add_argument("--against", choices=RANKINGS, default="global", help="(default: global)")
    p.add_argument("--exclude", nargs="*", default=None, help="as the variants' prune.exclude")
    p.add_argument("--seconds", type=float, default=1.0, help="timed seconds a model and round")
    p.add_argument("--rounds", type=int, default=7, help="rounds a try (default: 7)")
    p.add_argument(
        "--tolerance", type=float, default=0.02, help="how near 1 the ratio must be (0.02)"
    )
    p.add_argument("--steps", type=int, default=8, help="tries at most (default: 8)")


def run(args) -> None:
    import torch

    from alphaprune.budget.allocator import allocate
    from alphaprune.budget.channels import DEFAULT_RANKING
    from alphaprune.budget.latency_table import LatencyTable
    from alphaprune.budget.plan import BudgetError
    from alphaprune.loading import load_model
    from alphaprune.modelfile import is_student
    from alphaprune.pipeline.deploy.match import HIGHEST, search
    from alphaprune.pipeline.deploy.turns import measured_fractions

    ranking = args.ranking or DEFAULT_RANKING
    if args.student is not None and args.ranking is not None:
        raise ConfigError("--ranking: the reference's, with --amount; --student is timed as it is")
    if args.student is None and ranking == args.against:
        raise ConfigError(f"--against {args.against}: the reference's ranking already")
    for flag, ok, what in (
        ("amount", args.amount is None or 0 < args.amount <= HIGHEST, f"in (0, {HIGHEST}]"),
        ("seconds", args.seconds > 0, "above 0"),
        ("rounds", args.rounds >= 1, "at least 1"),
        ("steps", args.steps >= 1, "at least 1"),
        ("tolerance", 0 < args.tolerance < 1, "in (0, 1)"),
    ):
        if not ok:
            raise ConfigError(f"--{flag}: {what}, got {getattr(args, flag)}")
    model, recipe = load_model(args.teacher)
    if is_student(recipe):
        raise ConfigError(f"--teacher: {args.teacher} is a student, not a teacher")
    table = LatencyTable.from_file(args.table)
    shape = tuple(recipe["model"]["shape"])
    example = torch.zeros(2, *shape)

    def plan(amount: float, how: str):
        planned = allocate(
            model, "channels", amount, example, args.exclude, table.round_to, "latency",
            table=table, ranking=how,
        )  # fmt: skip
        kept = {r: table.widths[r] - len(idxs) for r, idxs in planned.removed.items()}
        return kept, planned.latency["teacher_ms"] / planned.latency["student_ms"]

    timing = {
        "batch": table.batch,
        "threads": table.threads,
        "seconds": args.seconds,
        "rounds": args.rounds,
    }
    engine = f"{table.engine}, batch {table.batch}, {table.threads} thread(s)"
    if args.student is None:
        start = args.amount
        reference, predicted = plan(args.amount, ranking)
        speedup = 1 / measured_fractions(model, shape, [reference], **timing)[0]
        print(
            f"reference: {ranking} at amount {args.amount}: predicted {predicted:.2f}x, "
            f"measured {speedup:.2f}x ({engine})"
        )
    else:
        reference = _student(args.student, args.teacher, recipe)
        fraction = measured_fractions(model, shape, [reference], **timing)[0]
        speedup = 1 / fraction
        # the search starts where a time proportional to what the plan keeps would match
        start = round(min(max(1 - fraction, 0.01), HIGHEST), 4)
        print(f"reference: {args.student}: measured {speedup:.2f}x ({engine})")

    def ratio_at(amount: float) -> float | None:
        try:
            kept, predicted = plan(amount, args.against)
        except BudgetError as err:  # it cannot remove that much: the search looks lower
            print(f"  {args.against} at amount {amount:.4f}: no plan ({err})", flush=True)
            return None
        ratio = measured_fractions(model, shape, [kept], reference=reference, **timing)[0]
        print(
            f"  {args.against} at amount {amount:.4f}: predicted {predicted:.2f}x, its time "
            f"{ratio:.3f} of the reference's (about {speedup / ratio:.2f}x)",
            flush=True,
        )
        return ratio

    found = search(ratio_at, start, tolerance=args.tolerance, most=args.steps)
    if not found.converged:
        raise BudgetError(
            f"not within --tolerance {args.tolerance} after {len(found.steps)} tries: the "
            f"nearest, {args.against} at amount {found.amount}, takes {found.ratio:.3f} of the "
            f"reference's time (plans move in blocks of {table.round_to} channels: a looser "
            "--tolerance, more --steps, or a table of a finer round_to)"
        )
    print(
        f"matched: {args.against} at amount {found.amount} takes {found.ratio:.3f} of the "
        f"reference's time. Its variant: {{branch: channels, target: latency, ranking: "
        f"{args.against}, amount: {found.amount}}}, planned from this table "
        f"({table.full_ms:.3f} ms, fixed share {table.fixed:.3f}); a table measured again "
        "plans both anew: match again"
    )


def _student(path: Path, teacher_path: Path, teacher_recipe: dict):
    """The student in `path`, refused where it is not a student of the teacher's model."""
    from alphaprune.loading import load_model
    from alphaprune.modelfile import is_student

    student, recipe = load_model(path)
    if not is_student(recipe):
        raise ConfigError(f"--student: {path} is a teacher (nothing pruned), not a student")

    def named(model: dict) -> str:
        shape = "x".join(map(str, model["shape"]))
        return f"{model['name']} ({model['num_classes']} classes, input {shape})"

    if recipe["model"] != teacher_recipe["model"]:
        raise ConfigError(
            f"--student: {path} is a student of {named(recipe['model'])}, and --teacher "
            f"{teacher_path} is {named(teacher_recipe['model'])}"
        )
    return student.eval()
