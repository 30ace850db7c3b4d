"""`python -m labelling export-tasks RUN --out DIR [--select drifted|uncertain|all] [--max-tasks N]
[--document-root DIR | --url-prefix URL]`; `python -m labelling import-annotations EXPORT.json
--model MODEL --out FOLDER [--document-root DIR]`; `python -m labelling backend --model MODEL
[--port 9090] [--document-root DIR] [--train-data DIR --work-dir DIR --threshold N --param k=v]`."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from pipelines.__main__ import parse_param
from shared.errors import UserError
from shared.logs import configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labelling", description=__doc__.split(";")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    tasks = sub.add_parser("export-tasks", help="Label Studio tasks from a batch-inference run")
    tasks.add_argument("run_dir", type=Path, help="the batch-inference run folder")
    tasks.add_argument("--out", type=Path, required=True,
                       help="folder for tasks.json and label_config.xml")
    tasks.add_argument("--select", default="drifted", help="drifted | uncertain | all")
    tasks.add_argument("--max-tasks", type=int, default=None)
    where = tasks.add_mutually_exclusive_group()
    where.add_argument("--document-root", type=Path, default=None,
                       help="Label Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (default: the"
                            " run's input_data)")
    where.add_argument("--url-prefix", default=None,
                       help="name images <prefix>/<path under input_data> instead of local files")

    imports = sub.add_parser("import-annotations", help="Label Studio JSON export -> ImageFolder")
    imports.add_argument("export", type=Path, help="Label Studio's JSON export")
    imports.add_argument("--out", type=Path, required=True, help="the ImageFolder to write")
    imports.add_argument("--model", type=Path, required=True,
                         help="the model whose classes the labels must be")
    imports.add_argument("--document-root", type=Path, default=None)
    imports.add_argument("--label-studio-url", default=None,
                         help="for images uploaded to Label Studio (with --api-key)")
    imports.add_argument("--api-key", default=None)

    backend = sub.add_parser("backend", help="serve Label Studio's ML-backend protocol")
    backend.add_argument("--model", type=Path, required=True,
                         help="model folder, model.tar.gz or <registry>/<name>/v<N>/model")
    backend.add_argument("--host", default="127.0.0.1")
    backend.add_argument("--port", type=int, default=9090)
    backend.add_argument("--document-root", type=Path, default=None)
    backend.add_argument("--label-studio-url", default=None,
                         help="default: the hostname Label Studio sends on connecting")
    backend.add_argument("--api-key", default=None,
                         help="default: the access token Label Studio sends on connecting")
    backend.add_argument("--train-data", type=Path, default=None,
                         help="labelled ImageFolder to retrain on with the new annotations;"
                              " none: annotations start no training")
    backend.add_argument("--work-dir", type=Path, default=Path("labelling-backend"))
    backend.add_argument("--threshold", type=int, default=50,
                         help="new annotations that start a training")
    backend.add_argument("--param", type=parse_param, action="append", default=[],
                         help="more training pipeline parameters, NAME=VALUE")

    args = parser.parse_args(argv)
    configure_logging()
    try:
        return {"export-tasks": export_command, "import-annotations": import_command,
                "backend": backend_command}[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def export_command(args: argparse.Namespace) -> int:
    from labelling.tasks import export_tasks

    summary = export_tasks(args.run_dir, args.out, how=args.select, max_tasks=args.max_tasks,
                           document_root=args.document_root, url_prefix=args.url_prefix)
    print(json.dumps(summary, indent=2))
    return 0


def import_command(args: argparse.Namespace) -> int:
    from labelling.annotations import import_annotations, read_export
    from labelling.model import LabellingModel

    report = import_annotations(read_export(args.export), LabellingModel(args.model).classes,
                                args.out, document_root=args.document_root,
                                label_studio=args.label_studio_url, token=args.api_key)
    print(f"{args.out}: {report.summary()}")
    return 0 if report.imported else 2


def backend_command(args: argparse.Namespace) -> int:
    from labelling.backend import Backend, make_server
    from labelling.model import LabellingModel
    from labelling.training import Trainer

    model = LabellingModel(args.model)
    model.classifier  # noqa: B018 (load now: a bad model fails here, not at the first task)
    trainer = None
    if args.train_data:
        params = {**dict(args.param), "input_data": str(args.train_data.resolve()),
                  "warm_start_model": str(args.model.resolve())}
        trainer = Trainer(args.work_dir, model.classes, params, threshold=args.threshold,
                          document_root=args.document_root)
    server = make_server(Backend(model, document_root=args.document_root,
                                 label_studio=args.label_studio_url, token=args.api_key,
                                 trainer=trainer), args.host, args.port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # serve_forever ends, cleanly
    logging.getLogger(__name__).info("ML backend for %s on http://%s:%d", model.version,
                                     *server.server_address[:2])
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
