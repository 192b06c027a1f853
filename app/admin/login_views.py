"""Logging in with an API token and out again."""

from __future__ import annotations

from typing import Any

from flask import g, redirect, request, url_for

from app.admin import access
from app.admin.blueprint import admin, page, runtime


@admin.get("/login")
def login() -> Any:
    if g.console_user is not None:  # already logged in
        return redirect(access.safe_next(request.args.get("next")))
    return page("admin/login.html", next=request.args.get("next", ""))


@admin.post("/login")
def login_submit() -> Any:
    target = request.form.get("next", "")
    user = access.log_in(runtime().db, request.form.get("token", ""))
    if user is None:
        error = "That token is unknown or revoked."
        return page("admin/login.html", status=401, next=target, error=error)
    return redirect(access.safe_next(target), 303)


@admin.post("/logout")
def logout() -> Any:
    access.log_out()
    return redirect(url_for("admin.login"), 303)


@admin.get("/")
def home() -> Any:
    return redirect(url_for("admin.jobs"))
