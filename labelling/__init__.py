"""Humans in the loop with Label Studio: tasks from a batch run, an ML backend, labels back in.

1. `python -m labelling export-tasks RUN` turns a batch-inference run's drifted and/or least
   confident images into Label Studio import JSON, each task pre-annotated with the model's
   prediction, plus the project's labelling configuration (`label_config.xml`).
2. `python -m labelling backend --model M` serves Label Studio's ML-backend protocol: it pre-labels
   new tasks with the model, counts new annotations from Label Studio's webhook and, past a
   threshold (or on "Start training"), runs the training pipeline with them.
3. `python -m labelling import-annotations EXPORT.json --out FOLDER` turns Label Studio's JSON
   export into an ImageFolder (`<class>/<image>`): the training pipeline's `extra_data`.

Images reach Label Studio as local files (see `labelling.images`): tasks name them
`/data/local-files/?d=<path under the document root>`, the URL Label Studio serves when started
with `LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true` and
`LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=<root>`; `--url-prefix` names them by URL instead.
"""
