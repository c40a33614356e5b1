"""The fleet report page: one self-contained HTML document from plain data.

``render_page(PageData) -> str`` is pure: no files, no network, no clock. The page
holds its CSS and JavaScript inline and loads nothing, so it opens from a disk, a mail
attachment or a CI artifact alike, and prints on paper (print CSS: no controls, every
host's details expanded).

Sections: hosts by role (state of the last run, running vs known-good, drift,
reachability; one click on a host shows its reason and every gate), the last deploy as
a timeline per host and gate, the fleet-wide diff grouped by cause, release tags per
target, the secrets blast-radius matrix (host x file), and earlier runs. Host rows
carry ``data-host``/``data-role``/``data-state`` and the filter bar (role, state,
text) and sortable columns act on them.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nixify.pipeline.report import GATES, HostReport, RunReport

_STATE_CLASS = {
    "deployed": "ok",
    "dry-run": "ok",
    "failed": "bad",
    "rolled-back": "bad",
    "unreachable": "bad",
    "skipped": "warn",
    "pending": "warn",
}
_RESULT_CLASS = {"passed": "ok", "failed": "bad", "skipped": "warn"}


@dataclass(frozen=True)
class ReleaseTagRow:
    name: str  # release/<target>/<UTC>-<shortrev>
    target: str
    commit: str
    date: str


@dataclass
class PageData:
    """Everything the page shows; every part but ``generated`` may be missing."""

    generated: str  # when the page was made (UTC, human)
    provenance: str = ""
    latest: RunReport | None = None
    latest_name: str = "reports/latest.json"
    history: list[tuple[str, RunReport]] = field(default_factory=list)  # newest first
    status: Mapping[str, Any] | None = None  # `nixify status --json`
    audit: Mapping[str, Any] | None = None  # `nixify secrets audit --json`
    tags: list[ReleaseTagRow] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)  # what could not be read, and why


def e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def short_path(path: str | None) -> str:
    """``/nix/store/<hash>-name`` as ``<hash8>…-name``."""
    if not path:
        return "-"
    base = path.removeprefix("/nix/store/")
    if len(base) > 33 and base[32] == "-":
        return f"{base[:8]}…{base[32:]}"
    return base


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


# -- the host table -------------------------------------------------------------------


@dataclass
class _HostRow:
    host: str
    role: str
    state: str
    reachable: str
    running: str
    known_good: str
    drift: list[str]
    reason: str
    report: HostReport | None


def _status_hosts(status: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    if not status:
        return {}
    hosts = status.get("hosts") or []
    return {str(h.get("host")): h for h in hosts if isinstance(h, Mapping) and h.get("host")}


def _host_rows(data: PageData) -> list[_HostRow]:
    live = _status_hosts(data.status)
    reported = data.latest.hosts if data.latest else {}
    rows = []
    for name in sorted(set(live) | set(reported)):
        rep = reported.get(name)
        st = live.get(name)
        role = (rep.role if rep else "") or str((st or {}).get("role") or "")
        state = rep.status.value if rep else "not in last run"
        reason = (rep.reason or "") if rep else ""
        if st is not None:
            reachable = "yes" if st.get("reachable") else "no"
            if not st.get("reachable"):
                reason = reason or str(st.get("error") or "did not answer")
                if not rep:
                    state = "unreachable"
            running = short_path(st.get("running"))
            kg = st.get("known_good") or {}
            known_good = short_path(kg.get("closure")) if kg else "none"
            if kg and kg.get("tag"):
                known_good += f" ({kg['tag']})"
            drift = [str(d) for d in st.get("drift") or []]
        else:
            reachable = "no (last run)" if rep and rep.status.value == "unreachable" else (
                "yes (last run)" if rep else "?")
            deployed = rep is not None and rep.status.value == "deployed"
            running = short_path(rep.closure if deployed else rep.previous) if rep else "-"
            known_good = (rep.known_good or "-") if rep else "-"
            drift = []
        rows.append(_HostRow(name, role, state, reachable, running, known_good, drift,
                             reason, rep))
    return rows


def _gate_table(rep: HostReport) -> str:
    out = ["<table class='gates'><thead><tr><th>gate</th><th>result</th><th>started (UTC)"
           "</th><th>seconds</th><th>detail</th></tr></thead><tbody>"]
    for g in GATES:
        gr = rep.gates.get(g)
        if gr is None:
            out.append(f"<tr><td>{e(g)}</td><td class='muted'>not run</td><td></td><td></td>"
                       "<td></td></tr>")
            continue
        res = gr.result.value
        out.append(
            f"<tr><td>{e(g)}</td><td class='{_RESULT_CLASS.get(res, '')}'>{e(res)}</td>"
            f"<td>{e(gr.started or '-')}</td><td class='num'>{gr.seconds:.1f}</td>"
            f"<td>{e(gr.detail)}</td></tr>"
        )
    out.append("</tbody></table>")
    return "".join(out)


def _hosts_section(rows: Sequence[_HostRow]) -> str:
    head = ("<tr><th data-sort='text'>host</th><th data-sort='text'>role</th>"
            "<th data-sort='text'>state</th><th data-sort='text'>reachable</th>"
            "<th data-sort='text'>running</th><th data-sort='text'>known-good</th>"
            "<th data-sort='text'>drift</th></tr>")
    body = []
    for r in rows:
        attrs = (f"data-host='{e(r.host)}' data-role='{e(r.role)}' data-state='{e(r.state)}'")
        drift = "; ".join(r.drift) if r.drift else "none"
        body.append(
            f"<tr class='host' {attrs}>"
            f"<td><button type='button' class='toggle' aria-expanded='false' "
            f"aria-controls='d-{e(r.host)}'>{e(r.host)}</button></td>"
            f"<td>{e(r.role)}</td>"
            f"<td class='state {_STATE_CLASS.get(r.state, '')}'>{e(r.state)}</td>"
            f"<td>{e(r.reachable)}</td><td class='mono'>{e(r.running)}</td>"
            f"<td class='mono'>{e(r.known_good)}</td>"
            f"<td class='{'warn' if r.drift else ''}'>{e(drift)}</td></tr>"
        )
        detail = [f"<p class='reason'><strong>reason:</strong> {e(r.reason or 'none')}</p>"]
        if r.report is not None:
            rep = r.report
            detail.append(
                f"<p class='mono'>builder {e(rep.builder or '-')} · closure "
                f"{e(short_path(rep.closure))} · previous {e(short_path(rep.previous))}"
                f" · mode {e(rep.mode)}</p>"
            )
            detail.append(_gate_table(rep))
        body.append(
            f"<tr class='details collapsed' id='d-{e(r.host)}' {attrs}>"
            f"<td colspan='7'>{''.join(detail)}</td></tr>"
        )
    if not rows:
        body.append("<tr><td colspan='7' class='muted'>no hosts: no run report and no "
                    "status</td></tr>")
    return (
        "<section id='hosts-section'><h2>Hosts</h2>"
        "<p class='hint'>Click a host for its reason and every gate; click a column to "
        "sort.</p><div class='scroll'><table id='hosts' class='sortable'>"
        f"<thead>{head}</thead><tbody>{''.join(body)}</tbody></table></div></section>"
    )


# -- the timeline -----------------------------------------------------------------------


def _timeline_section(report: RunReport | None) -> str:
    if report is None or not report.hosts:
        return ("<section id='timeline-section'><h2>Last deploy</h2>"
                "<p class='muted'>no run report</p></section>")
    spans: list[tuple[float, float]] = []
    for h in report.hosts.values():
        for gr in h.gates.values():
            t = _parse_time(gr.started)
            if t is not None:
                spans.append((t.timestamp(), t.timestamp() + gr.seconds))
    t0 = min((s for s, _ in spans), default=0.0)
    t1 = max((f for _, f in spans), default=1.0)
    total = max(t1 - t0, 1e-6)
    rows = []
    for name in sorted(report.hosts):
        h = report.hosts[name]
        bars = []
        secs = 0.0
        for g in GATES:
            step = h.gates.get(g)
            if step is None:
                continue
            secs += step.seconds
            t = _parse_time(step.started)
            left = ((t.timestamp() - t0) / total * 100) if t else 0.0
            width = max(step.seconds / total * 100, 0.6)
            res = step.result.value
            label = f"{g}: {res}, {step.seconds:.1f} s" + (
                f": {step.detail}" if step.detail else "")
            bars.append(
                f"<span class='bar {_RESULT_CLASS.get(res, '')}' title='{e(label)}' "
                f"style='left:{left:.2f}%;width:{min(width, 100 - left):.2f}%'>"
                f"<span class='sr'>{e(label)}</span></span>"
            )
        state = h.status.value
        attrs = f"data-host='{e(name)}' data-role='{e(h.role)}' data-state='{e(state)}'"
        rows.append(
            f"<tr class='tl' {attrs}><td>{e(name)}</td><td>{e(h.role)}</td>"
            f"<td class='track'><div class='lane'>{''.join(bars)}</div></td>"
            f"<td class='num'>{secs:.1f}</td>"
            f"<td class='state {_STATE_CLASS.get(state, '')}'>{e(state)}</td>"
            f"<td>{e(h.reason or '')}</td></tr>"
        )
    legend = ("<span class='key ok'>passed</span><span class='key bad'>failed</span>"
              "<span class='key warn'>skipped</span>")
    counts = ", ".join(f"{n} {s}" for s, n in report.counts().items())
    return (
        "<section id='timeline-section'><h2>Last deploy</h2>"
        f"<p>{e(report.kind)} · mode {e(report.mode)} · started {e(report.started)} · "
        f"finished {e(report.finished or '-')} · commit {e((report.commit or '-')[:12])}"
        f"{' (dirty tree)' if report.dirty else ''} · {e(counts)}</p>"
        f"<p class='hint'>One lane per host, one bar per gate in order ({e(', '.join(GATES))})"
        f", placed by its start and sized by its duration over {total:.1f} s. {legend}</p>"
        "<div class='scroll'><table id='timeline' class='sortable'><thead><tr>"
        "<th data-sort='text'>host</th><th data-sort='text'>role</th><th>gates</th>"
        "<th data-sort='num'>seconds</th><th data-sort='text'>state</th><th>reason</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div></section>"
    )


# -- the fleet-wide diff by cause -------------------------------------------------------


@dataclass
class _Cause:
    key: str
    what: str
    changes: list[str]
    hosts: set[str] = field(default_factory=set)
    roles: set[str] = field(default_factory=set)
    paths: int = 0


def _change_text(c: Mapping[str, Any]) -> str:
    kind = str(c.get("kind") or "")
    fld = str(c.get("field") or "")
    old, new = c.get("old"), c.get("new")
    label = f"{kind}:{fld}" if fld else kind
    return f"{label} {old if old is not None else '∅'} → {new if new is not None else '∅'}"


def fleet_causes(report: RunReport | None) -> list[_Cause]:
    """Every host's gate-2 evidence merged: one entry per root cause (or, where the
    root-cause analysis is missing, per package version change), with its hosts."""
    causes: dict[str, _Cause] = {}
    if report is None:
        return []

    def add(key: str, what: str, changes: list[str], host: HostReport, paths: int) -> None:
        c = causes.setdefault(key, _Cause(key, what, changes))
        c.hosts.add(host.host)
        c.roles.add(host.role)
        c.paths += paths

    for h in report.hosts.values():
        gr = h.gates.get("diff")
        ev: Mapping[str, Any] = gr.evidence if gr else {}
        rca = ev.get("rca")
        if isinstance(rca, Mapping):
            for cause in rca.get("causes") or []:
                name = str(cause.get("derivation") or cause.get("package") or "?")
                changes = [_change_text(c) for c in cause.get("changes") or []]
                paths = len(cause.get("consequences") or []) + len(cause.get("removes") or [])
                add(f"cause:{name}:{'|'.join(changes)}", name, changes, h, paths)
            for u in rca.get("unexplained") or []:
                reason = str(u.get("reason") or "unexplained")
                add(f"unexplained:{reason}", "unexplained", [reason], h, 1)
            continue
        diff = ev.get("diff")
        if isinstance(diff, Mapping):
            for p in diff.get("packages") or []:
                old = ", ".join(p.get("old_versions") or []) or "∅"
                new = ", ".join(p.get("new_versions") or []) or "∅"
                text = f"version {old} → {new}"
                add(f"package:{p.get('name')}:{text}", str(p.get("name")), [text], h, 1)
    return sorted(causes.values(), key=lambda c: (-len(c.hosts), c.what))


def _diff_section(report: RunReport | None) -> str:
    causes = fleet_causes(report)
    if not causes:
        body = "<p class='muted'>no closure changes recorded in the last run</p>"
    else:
        rows = []
        for c in causes:
            rows.append(
                f"<tr><td class='mono'>{e(c.what)}</td>"
                f"<td>{'<br>'.join(e(x) for x in c.changes) or '-'}</td>"
                f"<td class='num'>{len(c.hosts)}</td><td>{e(', '.join(sorted(c.roles)))}</td>"
                f"<td>{e(', '.join(sorted(c.hosts)))}</td><td class='num'>{c.paths}</td></tr>"
            )
        body = (
            "<div class='scroll'><table id='causes' class='sortable'><thead><tr>"
            "<th data-sort='text'>cause</th><th>change</th><th data-sort='num'>hosts</th>"
            "<th data-sort='text'>roles</th><th>which</th>"
            "<th data-sort='num'>paths</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>"
        )
    return ("<section id='diff-section'><h2>Fleet-wide diff by cause</h2>"
            "<p class='hint'>Gate 2's root causes on every host, merged: one row per cause, "
            f"with the hosts it changed.</p>{body}</section>")


# -- release tags, secrets, history ------------------------------------------------------


def _tags_section(tags: Sequence[ReleaseTagRow]) -> str:
    if not tags:
        return ("<section id='tags-section'><h2>Releases</h2>"
                "<p class='muted'>no release tags (release/*)</p></section>")
    by_target: dict[str, list[ReleaseTagRow]] = {}
    for t in tags:
        by_target.setdefault(t.target, []).append(t)
    rows = []
    for target in sorted(by_target):
        ts = sorted(by_target[target], key=lambda t: t.name, reverse=True)
        newest = ts[0]
        older = ", ".join(t.name.rsplit("/", 1)[-1] for t in ts[1:6])
        rows.append(
            f"<tr><td>{e(target)}</td><td class='mono'>{e(newest.name)}</td>"
            f"<td class='mono'>{e(newest.commit[:12])}</td><td>{e(newest.date)}</td>"
            f"<td class='num'>{len(ts)}</td><td class='mono'>{e(older or '-')}</td></tr>"
        )
    return (
        "<section id='tags-section'><h2>Releases</h2><div class='scroll'>"
        "<table id='tags' class='sortable'><thead><tr><th data-sort='text'>target</th>"
        "<th data-sort='text'>newest tag</th><th>commit</th><th data-sort='text'>tagged</th>"
        "<th data-sort='num'>tags</th><th>earlier</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _secrets_section(audit: Mapping[str, Any] | None, roles: Mapping[str, str],
                     states: Mapping[str, str]) -> str:
    if not audit or not audit.get("files"):
        return ("<section id='secrets-section'><h2>Secrets blast radius</h2>"
                "<p class='muted'>no secrets audit</p></section>")
    files = [f for f in audit.get("files") or [] if isinstance(f, Mapping)]
    hosts = [str(h) for h in audit.get("hosts") or []]
    head = "".join(f"<th class='file' title='{e(f.get('path'))}'><span>{e(f.get('path'))}"
                   "</span></th>" for f in files)
    rows = []
    for h in hosts:
        cells = []
        for f in files:
            reads = h in (f.get("readable_by") or [])
            mounts = h in (f.get("mounted_by") or [])
            mark, cls, what = (
                ("R", "ok", "mounts and can read") if reads and mounts else
                ("!", "bad", "can read but does not mount: excess") if reads else
                ("?", "warn", "mounts but cannot read: needs rekey") if mounts else
                ("·", "muted", "neither")
            )
            cells.append(f"<td class='cell {cls}' title='{e(h)}, {e(f.get('path'))}: "
                         f"{e(what)}'>{mark}</td>")
        role = roles.get(h, "")
        rows.append(f"<tr class='mx' data-host='{e(h)}' data-role='{e(role)}' "
                    f"data-state='{e(states.get(h, ''))}'><td>{e(h)}</td>"
                    f"<td>{e(role)}</td>{''.join(cells)}</tr>")
    problems = [str(p) for p in audit.get("problems") or []]
    plist = ("<ul class='problems'>" + "".join(f"<li>{e(p)}</li>" for p in problems) + "</ul>"
             if problems else "<p class='ok'>minimal recipients: no problems</p>")
    return (
        "<section id='secrets-section'><h2>Secrets blast radius</h2>"
        "<p class='hint'>R mounts and can read · ! can read, does not mount (excess) · "
        "? mounts, cannot read (rekey) · · neither</p><div class='scroll'>"
        f"<table id='matrix'><thead><tr><th>host</th><th>role</th>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>{plist}</section>"
    )


def _history_section(history: Sequence[tuple[str, RunReport]]) -> str:
    if not history:
        return ""
    rows = []
    for name, r in history[:30]:
        counts = ", ".join(f"{n} {s}" for s, n in r.counts().items())
        rows.append(
            f"<tr><td class='mono'>{e(name)}</td><td>{e(r.kind)}</td><td>{e(r.mode)}</td>"
            f"<td>{e(r.started)}</td><td class='mono'>{e((r.commit or '-')[:12])}</td>"
            f"<td class='{'ok' if r.ok else 'bad'}'>{e(counts)}</td></tr>"
        )
    return (
        "<section id='history-section'><h2>Runs</h2><div class='scroll'>"
        "<table id='runs' class='sortable'><thead><tr><th data-sort='text'>report</th>"
        "<th data-sort='text'>kind</th><th data-sort='text'>mode</th>"
        "<th data-sort='text'>started</th><th>commit</th><th>hosts</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div></section>"
    )


# -- the page ---------------------------------------------------------------------------

CSS = """
:root{--ok:#1a7f37;--bad:#c62828;--warn:#9a6700;--muted:#6e7781;--line:#d0d7de;
--bg:#fff;--head:#f6f8fa;font-family:system-ui,-apple-system,"Segoe UI",Roboto,
"DejaVu Sans",sans-serif;font-size:14px}
body{margin:0 auto;max-width:1400px;padding:12px 20px;color:#1f2328;background:var(--bg)}
h1{font-size:1.5rem;margin:.2em 0}h2{font-size:1.15rem;margin:1.4em 0 .4em;
border-bottom:1px solid var(--line)}
.meta,.hint,.muted{color:var(--muted)}.hint{font-size:.9em;margin:.2em 0 .5em}
.mono{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.92em}
.ok{color:var(--ok)}.bad{color:var(--bad);font-weight:600}.warn{color:var(--warn)}
.unavailable{background:#fff8c5;border:1px solid #d4a72c;padding:6px 10px;border-radius:4px}
.filters{position:sticky;top:0;background:var(--bg);padding:8px 0;z-index:2;
border-bottom:1px solid var(--line);display:flex;gap:14px;flex-wrap:wrap;align-items:center}
.filters label{font-weight:600}.filters select,.filters input{font:inherit;padding:2px 4px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;margin:.3em 0}
th,td{border-bottom:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
thead th{background:var(--head);position:sticky;top:0}
th[data-sort]{cursor:pointer;user-select:none}th[data-sort]:after{content:" \\2195";
color:var(--muted)}th.asc:after{content:" \\2191"}th.desc:after{content:" \\2193"}
td.num{text-align:right;font-variant-numeric:tabular-nums}
button.toggle{font:inherit;background:none;border:0;padding:0;color:#0550ae;cursor:pointer;
text-decoration:underline}
tr.details td{background:#f6f8fa}tr.details.collapsed{display:none}
table.gates{width:auto}table.gates td,table.gates th{padding:2px 8px}
.reason{margin:.3em 0}
.track{width:45%;min-width:240px}.lane{position:relative;height:16px;background:#eef1f4;
border-radius:3px}
.bar{position:absolute;top:2px;height:12px;border-radius:2px;background:var(--ok);
box-shadow:inset -2px 0 #fff}
.bar.bad{background:var(--bad)}.bar.warn{background:#d4a72c}
.key{display:inline-block;padding:0 6px;margin-left:6px;border-radius:3px;color:#fff}
.key.ok{background:var(--ok)}.key.bad{background:var(--bad)}.key.warn{background:#d4a72c}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}
#matrix td.cell{text-align:center;font-weight:600;font-family:ui-monospace,monospace}
#matrix th.file{writing-mode:vertical-rl;transform:rotate(180deg);white-space:nowrap;
font-weight:normal;font-size:.85em;max-height:14em}
[hidden]{display:none!important}
@media print{
 :root{font-size:10.5px}body{max-width:none;padding:0}
 .filters,.hint button{display:none}
 tr.details.collapsed{display:table-row}
 button.toggle{color:#000;text-decoration:none}
 thead th{position:static}section{break-inside:auto}tr{break-inside:avoid}
 .bar{print-color-adjust:exact;-webkit-print-color-adjust:exact}
 .key{print-color-adjust:exact;-webkit-print-color-adjust:exact}
 .scroll{overflow:visible}
}
"""

JS = """
(function(){
  var role=document.getElementById('f-role'),state=document.getElementById('f-state'),
      text=document.getElementById('f-text'),shown=document.getElementById('f-count');
  function apply(){
    var r=role.value,s=state.value,q=text.value.trim().toLowerCase(),n=0;
    document.querySelectorAll('[data-host]').forEach(function(el){
      var ok=(!r||el.dataset.role===r)&&(!s||el.dataset.state===s)&&
             (!q||el.dataset.host.toLowerCase().indexOf(q)>=0);
      el.hidden=!ok;
      if(ok&&el.classList.contains('host'))n++;
    });
    shown.textContent=n+' host(s) shown';
  }
  [role,state].forEach(function(x){x.addEventListener('change',apply);});
  text.addEventListener('input',apply);
  document.querySelectorAll('button.toggle').forEach(function(b){
    b.addEventListener('click',function(){
      var d=document.getElementById(b.getAttribute('aria-controls'));
      var open=d.classList.toggle('collapsed')===false;
      b.setAttribute('aria-expanded',open?'true':'false');
    });
  });
  document.querySelectorAll('table.sortable th[data-sort]').forEach(function(th){
    th.addEventListener('click',function(){
      var table=th.closest('table'),body=table.tBodies[0],col=th.cellIndex;
      var asc=!th.classList.contains('asc');
      table.querySelectorAll('th').forEach(function(h){h.classList.remove('asc','desc');});
      th.classList.add(asc?'asc':'desc');
      var rows=Array.prototype.filter.call(body.rows,function(tr){
        return !tr.classList.contains('details');});
      function key(tr){var t=tr.cells[col]?tr.cells[col].textContent.trim():'';
        return th.dataset.sort==='num'?parseFloat(t)||0:t.toLowerCase();}
      rows.sort(function(a,b){var x=key(a),y=key(b);return (x<y?-1:x>y?1:0)*(asc?1:-1);});
      rows.forEach(function(tr){body.appendChild(tr);
        var d=tr.querySelector('button.toggle');
        if(d){body.appendChild(document.getElementById(d.getAttribute('aria-controls')));}});
    });
  });
  apply();
})();
"""


def _options(values: Iterable[str]) -> str:
    return "".join(f"<option value='{e(v)}'>{e(v)}</option>" for v in sorted(set(values)) if v)


def render_page(data: PageData) -> str:
    """The whole report page as one HTML document."""
    rows = _host_rows(data)
    roles = {r.host: r.role for r in rows}
    states = {r.host: r.state for r in rows}
    notes = "".join(f"<li>{e(n)}</li>" for n in data.unavailable)
    unavailable = (
        f"<div class='unavailable' id='unavailable'><strong>Not available:</strong>"
        f"<ul>{notes}</ul></div>" if data.unavailable else ""
    )
    source = e(data.latest_name) if data.latest else "no run report"
    filters = (
        "<div class='filters' role='search'>"
        f"<label for='f-role'>role</label><select id='f-role'><option value=''>all</option>"
        f"{_options(r.role for r in rows)}</select>"
        f"<label for='f-state'>state</label><select id='f-state'><option value=''>all</option>"
        f"{_options(r.state for r in rows)}</select>"
        "<label for='f-text'>host</label><input id='f-text' type='search' "
        "placeholder='name contains…'><span id='f-count' class='muted'></span></div>"
    )
    failed = sum(1 for r in rows if _STATE_CLASS.get(r.state) == "bad")
    title = f"nixify fleet report: {len(rows)} hosts, {failed} not ok"
    body = "".join((
        _hosts_section(rows),
        _timeline_section(data.latest),
        _diff_section(data.latest),
        _tags_section(data.tags),
        _secrets_section(data.audit, roles, states),
        _history_section(data.history),
    ))
    embedded = json.dumps({"generated": data.generated, "hosts": len(rows)})
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{e(title)}</h1><p class='meta'>generated {e(data.generated)} from "
        f"{source}" + (f" · {e(data.provenance)}" if data.provenance else "") + "</p>"
        f"{unavailable}</header>{filters}<main>{body}</main>"
        f"<script type='application/json' id='report-meta'>{e(embedded)}</script>"
        f"<script>{JS}</script></body></html>\n"
    )
