"""The dashboard's HTML shells. Data arrives as JSON (`/ops/api/overview`) and `static/dashboard.js`
renders it with textContent only, so nothing from a message can become markup."""

from __future__ import annotations

from html import escape
from string import Template

_HEAD = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<link rel="icon" href="$base/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="$base/static/dashboard.css">
"""

DASHBOARD = Template(
    _HEAD
    + """<meta name="csrf-token" content="$csrf">
<meta name="refresh-seconds" content="$refresh">
<meta name="api-base" content="$base">
<script src="$base/static/dashboard.js" defer></script>
</head>
<body>
<header class="top">
  <div class="brand"><span class="dot" id="health-dot"></span>pedro-worker <span class="muted">ops</span></div>
  <div class="ns">namespace <code id="namespace">$namespace</code></div>
  <div class="health" id="health">loading…</div>
  <div class="spacer"></div>
  <div class="updated muted" id="updated">—</div>
  <a class="btn ghost" href="/metrics">/metrics</a>
  $logout
</header>
<div id="banner" class="banner" hidden></div>
<noscript><div class="banner">This dashboard needs JavaScript (served with the page, no CDN).</div></noscript>
<main>
  <section class="kpis" id="kpis"></section>
  <section class="row">
    <div class="card grow"><h2>Messages <span class="muted">all queues · per second · 15 min</span></h2>
      <div class="chart" id="chart-messages"></div><div class="legend" id="legend-messages"></div></div>
    <div class="card grow"><h2>Ledger events <span class="muted">per second · 15 min</span></h2>
      <div class="chart" id="chart-ledger"></div><div class="legend" id="legend-ledger"></div></div>
  </section>
  <section class="card"><h2>Queues</h2><table class="grid" id="queues"></table></section>
  <section class="row">
    <div class="card grow"><h2>Ledger</h2><div id="ledger" class="ledger"></div></div>
    <div class="card grow"><h2>Worker processes <span class="muted">from broker heartbeats</span></h2>
      <table class="grid" id="workers"></table></div>
  </section>
  <section class="card" id="waiting-panel">
    <h2>Waiting <span class="muted">in PostgreSQL, until what they wait for happens</span>
      <span class="muted" id="waiting-count"></span></h2>
    <table class="grid" id="waiting-reasons"></table>
    <h3 class="sub">Oldest</h3>
    <table class="grid waiting" id="waiting-events"></table>
  </section>
  <section class="card" id="credits-panel">
    <h2>Credits expiring / expired <span class="muted">grants in PostgreSQL</span>
      <span class="muted" id="credits-summary"></span></h2>
    <div id="credits-expiry" class="ledger"></div>
  </section>
  <section class="card" id="holds-panel">
    <h2>Holds <span class="muted">credits set aside for AI calls in progress</span>
      <span class="muted" id="holds-summary"></span></h2>
    <div id="holds" class="ledger"></div>
  </section>
  <section class="card" id="notifications-panel">
    <h2>Notifications <span class="muted">signed webhooks to the app, from the outbox</span>
      <span class="muted" id="notifications-summary"></span></h2>
    <div id="notifications-off" class="notice" hidden></div>
    <div id="notifications" class="ledger"></div>
    <h3 class="sub">Latest failures</h3>
    <table class="grid notifications" id="notifications-failures"></table>
  </section>
  <section class="card">
    <h2>Dead letters <span class="muted" id="dlq-count"></span></h2>
    <div class="toolbar">
      <label>queue <select id="f-queue"><option value="">all</option></select></label>
      <label>reason <select id="f-reason"><option value="">all</option></select></label>
      <div class="spacer"></div>
      <button class="btn" id="requeue-all" type="button">Requeue all shown</button>
      <button class="btn danger" id="purge-all" type="button">Purge all shown</button>
    </div>
    <table class="grid dlq" id="dead-letters"></table>
  </section>
</main>
<div id="toast" class="toast" hidden></div>
</body>
</html>
"""
)

LOGOUT = Template("""<form method="post" action="$base/logout" id="logout-form">
<input type="hidden" name="csrf_token" value="$csrf"><button class="btn ghost" type="submit">Log out</button></form>""")

LOGIN = Template(
    _HEAD
    + """</head>
<body class="login">
<form class="card login-card" method="post" action="$base/login">
  <h1><span class="dot ok"></span>pedro-worker <span class="muted">ops</span></h1>
  <p class="muted">Enter the ops token (<code>PEDRO_OPS_TOKEN</code>).</p>
  $error
  <input type="password" name="token" id="token" autocomplete="current-password" autofocus required>
  <button class="btn" type="submit" id="login">Sign in</button>
</form>
</body>
</html>
"""
)

CLOSED = Template(
    _HEAD
    + """</head>
<body class="login"><div class="card login-card"><h1>Dashboard closed</h1>
<p>Set <code>PEDRO_OPS_TOKEN</code> or <code>PEDRO_OPS_BASIC_AUTH</code> to open it.</p></div></body>
</html>
"""
)


def dashboard(*, base: str, csrf: str, refresh_s: int, namespace: str, logout: bool) -> str:
    return DASHBOARD.substitute(
        title="pedro-worker · ops",
        base=escape(base),
        csrf=escape(csrf),
        refresh=refresh_s,
        namespace=escape(namespace),
        logout=LOGOUT.substitute(base=escape(base), csrf=escape(csrf)) if logout else "",
    )


def login(*, base: str, error: str = "") -> str:
    return LOGIN.substitute(
        title="pedro-worker · sign in",
        base=escape(base),
        error=f'<p class="error">{escape(error)}</p>' if error else "",
    )


def closed(*, base: str) -> str:
    return CLOSED.substitute(title="pedro-worker · ops", base=escape(base))
