"""``python -m bench.tuned_worker [options]``: `booking worker` with worker tuning applied.

For measuring a worker setting before it lands in ``worker.py``: it runs
``worker.main()`` unchanged except that the ``Worker`` that ``create_worker``
builds gets the options given here. Use it through
``booking bench --worker-command "python -m bench.tuned_worker --passthrough workflows"``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.tuned_worker")
    p.add_argument(
        "--passthrough",
        action="append",
        default=[],
        help="module to pass through the workflow sandbox instead of re-importing it for "
        "every workflow run (repeatable), e.g. workflows",
    )
    p.add_argument(
        "--passthrough-all",
        action="store_true",
        help="pass every module through the sandbox (its checks on calls stay on)",
    )
    p.add_argument(
        "--unsandboxed",
        action="store_true",
        help="run workflows without the sandbox (to measure what the sandbox costs)",
    )
    p.add_argument(
        "--switch-interval",
        type=float,
        help="sys.setswitchinterval in seconds (Python's default is 0.005)",
    )
    p.add_argument(
        "--nonsticky-ratio",
        type=float,
        help="nonsticky_to_sticky_poll_ratio: share of workflow-task pollers on the shared queue",
    )
    p.add_argument(
        "--no-search-attribute-upserts",
        action="store_true",
        help="experiment: the booking workflow skips its search-attribute upserts (to measure "
        "what they cost the server; the start's own search attributes stay)",
    )
    p.add_argument("--workflow-task-polls", type=int, help="max_concurrent_workflow_task_polls")
    p.add_argument("--activity-task-polls", type=int, help="max_concurrent_activity_task_polls")
    p.add_argument("--max-cached-workflows", type=int, help="sticky cache size")
    return p


def worker_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.passthrough:
        options["workflow_runner"] = SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules(*args.passthrough)
        )
    if args.passthrough_all:
        options["workflow_runner"] = SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_all_modules()
        )
    if args.unsandboxed:
        options["workflow_runner"] = UnsandboxedWorkflowRunner()
    if args.nonsticky_ratio is not None:
        options["nonsticky_to_sticky_poll_ratio"] = args.nonsticky_ratio
    if args.workflow_task_polls:
        options["max_concurrent_workflow_task_polls"] = args.workflow_task_polls
    if args.activity_task_polls:
        options["max_concurrent_activity_task_polls"] = args.activity_task_polls
    if args.max_cached_workflows is not None:
        options["max_cached_workflows"] = args.max_cached_workflows
    return options


def main(argv: list[str]) -> None:
    import worker

    args = _parser().parse_args(argv)
    options = worker_options(args)
    if args.no_search_attribute_upserts:
        from workflows.booking import ApartmentBookingWorkflow

        def skip(self: object, *, initial: bool = False) -> None:
            del self, initial

        setattr(ApartmentBookingWorkflow, "_upsert_search_attributes", skip)  # noqa: B010
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)

    def tuned_worker(*args: Any, **kwargs: Any) -> Worker:
        return Worker(*args, **{**kwargs, **options})

    setattr(worker, "Worker", tuned_worker)  # noqa: B010 - replacing the factory on purpose
    print(f"tuned worker: {sorted(options)}", flush=True)
    worker.exit_now(worker.main())


if __name__ == "__main__":
    main(sys.argv[1:])
