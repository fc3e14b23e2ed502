"""An independent Loro peer (the Python `loro` package) for cross-checking the server.

Reads a JSON request on stdin, answers JSON on stdout:
  {"op": "read", "blobs": [base64, ...]}
      import every blob (a snapshot and/or updates) into a fresh document and answer
      {"files": {path: text}, "pending": bool}
  {"op": "edit", "blobs": [base64, ...], "peer": int, "path": str, "append": str}
      import the blobs, append `append` to the text at `path` (created mergeable when absent),
      answer {"update": base64 of the changes since the imported state, "files": {...}}
"""

import base64
import json
import sys

import loro


def files_of(doc):
    files = {}
    value = doc.get_map("files").get_deep_value()
    for path, text in value.items():
        if isinstance(text, str):
            files[path] = text
    return files


def load(blobs):
    doc = loro.LoroDoc()
    pending = False
    for blob in blobs:
        status = doc.import_(base64.b64decode(blob))
        pending = pending or status.pending is not None
    return doc, pending


def main():
    request = json.load(sys.stdin)
    doc, pending = load(request.get("blobs", []))
    if request["op"] == "read":
        json.dump({"files": files_of(doc), "pending": pending}, sys.stdout)
        return
    if request["op"] == "edit":
        doc.peer_id = request["peer"]
        before = doc.oplog_vv
        text = doc.get_map("files").ensure_mergeable_text(request["path"])
        text.insert(text.len_unicode, request["append"])
        doc.commit()
        update = doc.export(loro.ExportMode.Updates(before))
        json.dump(
            {"update": base64.b64encode(update).decode(), "files": files_of(doc)},
            sys.stdout,
        )
        return
    raise SystemExit(f"unknown op {request['op']!r}")


if __name__ == "__main__":
    main()
