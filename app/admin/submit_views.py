"""The submit page: paste or upload a ChainedJobInfo, check it, see the tree, submit."""

from __future__ import annotations

from typing import Any

from flask import g, redirect, render_template, request, url_for

from app.admin import preview
from app.admin.access import flash
from app.admin.blueprint import admin, page, runtime
from app.services.submit import RoleDenied, SubmitService
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
    """``action=check`` only validates; ``action=submit`` stores a valid tree, through the
    submit service as the API does: the preview is its check, then the role and the store."""
    rt = runtime()
    text = _payload_text()
    checked = preview.check(rt, text)
    if request.form.get("action") != "submit" or checked.chain is None:
        status = 200 if checked.valid else 400
        return page("admin/submit.html", status=status, text=text, example=EXAMPLE, preview=checked)
    service = SubmitService.for_runtime(rt)
    try:
        submitted = service.store(service.authorize(checked.chain, g.console_user.role))
    except RoleDenied as exc:
        checked.add_problems(exc.details)
        return page("admin/submit.html", status=403, text=text, example=EXAMPLE, preview=checked)
    except JoinConflict as exc:
        checked.errors.append(str(exc))
        return page("admin/submit.html", status=409, text=text, example=EXAMPLE, preview=checked)
    flash(f"Submitted chain {submitted.root_id}.", "ok")
    return redirect(url_for("admin.chain", root_id=submitted.root_id), 303)


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
