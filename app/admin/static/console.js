// jobchain console: local times, live refresh that keeps scroll and filters, confirmations,
// and the submit page's check-as-you-type preview. No dependencies.
"use strict";

const FETCH_HEADER = "X-Console-Fetch";

function localize(root) {
  // The browser's zone, named (CET, GMT+2): a time without its zone is ambiguous.
  const format = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
  });
  for (const el of root.querySelectorAll("time[datetime]")) {
    const moment = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(moment.getTime())) continue;
    el.title = el.title || el.textContent;  // the UTC time, on hover
    el.textContent = format.format(moment);
  }
}

// Fetch the page's live part again and put it in place, keeping the scroll position.
// Resolves to false when the answer was not used (graph.js calls it after a change too).
async function refreshLive(live) {
  try {
    const response = await fetch(window.location.href, {
      headers: { [FETCH_HEADER]: "fragment" }, credentials: "same-origin",
    });
    if (response.redirected || response.status === 401) {
      window.location.reload();  // logged out: the login page
      return false;
    }
    if (!response.ok) return false;
    const x = window.scrollX, y = window.scrollY;
    live.innerHTML = await response.text();
    localize(live);
    window.scrollTo(x, y);
    live.dispatchEvent(new CustomEvent("console:refreshed", { bubbles: true }));
    return true;
  } catch (error) {
    return false;  // the server is restarting or the network blinked: try again later
  }
}

function liveRefresh(live) {
  const toggle = document.getElementById("auto-refresh");
  const interval = () => {
    const marker = live.querySelector("[data-refresh-seconds]");
    return marker ? Number(marker.dataset.refreshSeconds) * 1000 : 0;
  };
  let timer = 0;
  const tick = async () => {
    timer = 0;
    if ((!toggle || toggle.checked) && !document.hidden) await refreshLive(live);
    schedule();
  };
  const schedule = () => {
    window.clearTimeout(timer);
    const next = interval();
    timer = next > 0 ? window.setTimeout(tick, next) : 0;
  };
  // A refresh made by the page itself may start (or end) the need to refresh.
  live.addEventListener("console:refreshed", () => { if (!timer) schedule(); });
  schedule();
}

function confirmations() {
  document.addEventListener("submit", (event) => {
    const question = event.target.dataset && event.target.dataset.confirm;
    if (question && !window.confirm(question)) event.preventDefault();
  });
}

function browserZone() {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  for (const input of document.querySelectorAll("input[data-browser-zone]")) {
    const filtered = new URLSearchParams(window.location.search);
    // Keep the zone the shown times were entered in; a fresh form uses this browser's.
    if (!filtered.get("since") && !filtered.get("until") && zone) input.value = zone;
  }
}

function submitPreview(form) {
  const textarea = form.querySelector("textarea[name=payload]");
  const file = form.querySelector("input[type=file]");
  const target = document.getElementById("preview");
  const token = form.querySelector("input[name=csrf_token]").value;
  let timer = 0;
  const check = async () => {
    const body = new FormData();
    body.set("payload", textarea.value);
    const response = await fetch(form.dataset.checkUrl, {
      method: "POST", body, credentials: "same-origin",
      headers: { [FETCH_HEADER]: "check", "X-CSRF-Token": token },
    });
    if (response.ok) {
      target.innerHTML = await response.text();
      return;
    }
    // A refusal (body too large, session ended): say so instead of a stale preview.
    let message = `HTTP ${response.status}`;
    try {
      message = (await response.json()).error.message || message;
    } catch (error) {
      // not the JSON error shape: keep the status
    }
    const note = document.createElement("p");
    note.className = "flash flash-error";
    note.textContent = message;
    target.replaceChildren(note);
  };
  textarea.addEventListener("input", () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(check, 400);
  });
  // Text already in the box when this runs (typed while the page loaded, or restored by the
  // browser on going back) sent its input events to no one: preview it now.
  if (textarea.value.trim()) check();
  file.addEventListener("change", async () => {
    if (!file.files.length) return;
    textarea.value = await file.files[0].text();
    file.value = "";  // the text area now holds it; it is what gets submitted
    check();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  localize(document);
  confirmations();
  browserZone();
  const live = document.getElementById("live");
  if (live) liveRefresh(live);
  const form = document.getElementById("submit-form");
  if (form) submitPreview(form);
});
