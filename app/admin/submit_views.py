"""The submit page: paste or upload a ChainedJobInfo, check it, see the tree, submit."""

from __future__ import annotations

from typing import Any

from flask import redirect, render_template, request, url_for

from app.admin import preview
from app.admin.access import flash
from app.admin.blueprint import admin, page, runtime
from app.store import submission
from app.store.join_setup import JoinConflict

EXAMPLE = """{
  "targetObject": "155.LPG",
  "parameters": {"mode": "full"},
  "nextJobs": [{"targetObject": "38.CFS", "executeOnError": true}]
}"""


@admin.get("/submit")
def submit() -> Any:
    return page("admin/submit.html", text="", example=EXAMPLE, preview=None)


@admin.post("/submit")
def submit_post() -> Any:
    """``action=check`` only validates; ``action=submit`` stores a valid tree."""
    rt = runtime()
    text = _payload_text()
    checked = preview.check(rt, text)
    if request.form.get("action") != "submit" or not checked.valid or checked.spec is None:
        status = 200 if checked.valid else 400
        return page("admin/submit.html", status=status, text=text, example=EXAMPLE, preview=checked)
    try:
        root_id = submission.submit(rt.db, checked.spec)
    except JoinConflict as exc:
        checked.errors.append(str(exc))
        return page("admin/submit.html", status=409, text=text, example=EXAMPLE, preview=checked)
    flash(f"Submitted chain {root_id}.", "ok")
    return redirect(url_for("admin.chain", root_id=root_id), 303)


@admin.post("/submit/check")
def submit_check() -> Any:
    """The preview alone, for console.js to show while the payload is being edited."""
    checked = preview.check(runtime(), _payload_text())
    return render_template("admin/_preview.html", preview=checked)


def _payload_text() -> str:
    upload = request.files.get("file")
    if upload is not None and upload.filename:
        return upload.read().decode("utf-8", errors="replace")
    return request.form.get("payload", "")
