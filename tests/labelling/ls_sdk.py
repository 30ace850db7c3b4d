"""Label Studio's own client (label-studio-sdk), driven by the real-server test: runs with the Label
Studio environment's Python (the SDK stays out of the suite's lock), one command per call:
`python ls_sdk.py COMMAND JSON` prints the answer as JSON."""

import json
import sys

from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError


def project(ls, a):
    created = ls.projects.create(title=a["title"], label_config=a["label_config"])
    return {"id": created.id}


def import_tasks(ls, a):
    answer = ls.projects.import_tasks(id=a["project"], request=a["tasks"], return_task_ids=True)
    return {"task_ids": list(answer.task_ids)}


def connect(ls, a):
    backend = ls.ml.create(project=a["project"], url=a["url"], title="suite", is_interactive=False)
    return {"id": backend.id, "state": str(getattr(backend, "state", ""))}


def retrieve(ls, a):
    ls.actions.create(id="retrieve_tasks_predictions", project=a["project"],
                      selected_items={"all": False, "included": a["task_ids"]})
    return {}


def tasks(ls, a):
    out = []
    for task in ls.tasks.list(project=a["project"], fields="all"):
        out.append({"id": task.id, "data": task.data,
                    "predictions": [{"model_version": p.get("model_version") if isinstance(p, dict)
                                     else p.model_version,
                                     "score": p.get("score") if isinstance(p, dict) else p.score,
                                     "result": p.get("result") if isinstance(p, dict) else p.result}
                                    for p in task.predictions or []],
                    "annotations": len(task.annotations or [])})
    return {"tasks": out}


def annotate(ls, a):
    ids = []
    for item in a["annotations"]:
        result = [] if item.get("label") is None else [
            {"from_name": "label", "to_name": "image", "type": "choices",
             "value": {"choices": [item["label"]]}}]
        ids.append(ls.annotations.create(id=item["task"], result=result,
                                         was_cancelled=bool(item.get("cancelled"))).id)
    return {"annotation_ids": ids}


def export(ls, a):
    chunks = ls.projects.exports.download_sync(id=a["project"], export_type="JSON",
                                               download_all_tasks=True)
    data = b"".join(chunks) if not isinstance(chunks, bytes) else chunks
    with open(a["out"], "wb") as f:
        f.write(data)
    return {"tasks": len(json.loads(data))}


if __name__ == "__main__":
    command, arguments = sys.argv[1], json.loads(sys.argv[2])
    client = LabelStudio(base_url=arguments.pop("base_url"), api_key=arguments.pop("token"))
    try:
        print(json.dumps(globals()[command](client, arguments)))
    except ApiError as exc:  # the status and Label Studio's own message, not its HTML
        sys.exit(f"{command}: Label Studio answered {exc.status_code}: {str(exc.body)[:2000]}")
