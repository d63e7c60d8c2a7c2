// pedro-worker ops dashboard. Plain DOM, no library, no CDN: renders /ops/api/overview every few
// seconds. Everything from Redis or a message goes in through textContent, never as markup.
"use strict";

(function () {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
  const BASE = meta("api-base");
  const CSRF = meta("csrf-token");
  const REFRESH_MS = Math.max(1, Number(meta("refresh-seconds")) || 5) * 1000;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const COLORS = { processed: "#58a6ff", failed: "#f85149", retried: "#d29922", dead: "#a371f7",
                   applied: "#3fb950", duplicate: "#8b98ab", rejected: "#a371f7" };
  const state = { view: null, queue: "", reason: "", timer: null, busy: false };

  // --- tiny DOM helpers ------------------------------------------------------------------------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }
  function s(tag, attrs) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    return el;
  }
  const $ = (id) => document.getElementById(id);
  const fill = (el, ...children) => { el.replaceChildren(...children.flat().filter((c) => c)); };

  // --- formatting ------------------------------------------------------------------------------
  const fmtInt = (n) => (n ?? 0).toLocaleString("en-US");
  function fmtRate(r) {
    if (!r) return "0";
    return r >= 100 ? Math.round(r).toLocaleString("en-US") : r >= 10 ? r.toFixed(1) : r.toFixed(2);
  }
  function fmtAge(sec) {
    sec = Math.max(0, Math.floor(sec));
    if (sec < 60) return `${sec}s`;
    if (sec < 3600) return `${Math.floor(sec / 60)}m ${sec % 60}s`;
    if (sec < 86400) return `${Math.floor(sec / 3600)}h ${Math.floor((sec % 3600) / 60)}m`;
    return `${Math.floor(sec / 86400)}d ${Math.floor((sec % 86400) / 3600)}h`;
  }
  function fmtMs(ms) {
    if (ms === null || ms === undefined) return "—";
    return ms >= 1000 ? `≤ ${ms / 1000} s` : `≤ ${ms} ms`;
  }
  const sum = (values) => values.reduce((a, b) => a + b, 0);
  const addSeries = (list) => list.reduce((acc, v) => acc.map((x, i) => x + (v[i] || 0)), new Array(list[0].length).fill(0));

  // --- charts ----------------------------------------------------------------------------------
  function sparkline(values, color, w = 160, hgt = 30) {
    const max = Math.max(1, ...values);
    const step = w / Math.max(1, values.length - 1);
    const pts = values.map((v, i) => `${(i * step).toFixed(1)},${(hgt - 2 - (v / max) * (hgt - 4)).toFixed(1)}`);
    const svg = s("svg", { width: w, height: hgt, viewBox: `0 0 ${w} ${hgt}` });
    svg.append(s("polygon", { points: `0,${hgt} ${pts.join(" ")} ${w},${hgt}`, fill: color, "fill-opacity": 0.15 }));
    svg.append(s("polyline", { points: pts.join(" "), fill: "none", stroke: color, "stroke-width": 1.5 }));
    return svg;
  }

  function lineChart(container, legend, series, bucketS) {
    const W = 900, H = 170, L = 44, B = 18, T = 8;
    const perSec = series.map((x) => ({ ...x, values: x.values.map((v) => v / bucketS) }));
    const max = Math.max(0.1, ...perSec.flatMap((x) => x.values));
    const n = perSec[0].values.length;
    const X = (i) => L + (i * (W - L - 4)) / Math.max(1, n - 1);
    const Y = (v) => T + (H - T - B) * (1 - v / max);
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none" });
    for (const f of [0, 0.5, 1]) {
      svg.append(s("line", { x1: L, x2: W, y1: Y(max * f), y2: Y(max * f), class: "gridline" }));
      const label = s("text", { x: L - 6, y: Y(max * f) + 4, "text-anchor": "end", class: "axis" });
      label.textContent = fmtRate(max * f);
      svg.append(label);
    }
    const minutes = Math.round((n * bucketS) / 60);
    [[0, `-${minutes}m`], [Math.floor((n - 1) / 3), `-${Math.round((minutes * 2) / 3)}m`],
     [Math.floor(((n - 1) * 2) / 3), `-${Math.round(minutes / 3)}m`], [n - 1, "now"]].forEach(([i, text]) => {
      const t = s("text", { x: X(i), y: H - 3, "text-anchor": i === n - 1 ? "end" : i === 0 ? "start" : "middle", class: "axis" });
      t.textContent = text;
      svg.append(t);
    });
    for (const x of perSec) {
      const pts = x.values.map((v, i) => `${X(i).toFixed(1)},${Y(v).toFixed(1)}`).join(" ");
      svg.append(s("polygon", { points: `${X(0)},${Y(0)} ${pts} ${X(n - 1)},${Y(0)}`, fill: x.color, "fill-opacity": 0.08 }));
      svg.append(s("polyline", { points: pts, fill: "none", stroke: x.color, "stroke-width": 2, "stroke-linejoin": "round" }));
    }
    fill(container, svg);
    fill(legend, perSec.map((x) => {
      const swatch = h("i");
      swatch.style.background = x.color;
      const now = x.values.slice(-6);
      return h("span", {}, swatch, `${x.name} `, h("b", { text: `${fmtRate(sum(now) / Math.max(1, now.length))}/s` }));
    }));
  }

  // --- sections --------------------------------------------------------------------------------
  function kpi(label, value, sub, level, spark) {
    return h("div", { class: `kpi ${level || ""}` }, h("div", { class: "label", text: label }),
      h("div", { class: "value", text: value }), h("div", { class: "sub", text: sub }), spark || null);
  }

  function renderHeader(v) {
    const level = v.health.level;
    $("health-dot").className = `dot ${level}`;
    const el = $("health");
    el.className = `health ${level}`;
    el.textContent = level === "ok" ? "All clear — events are flowing" : v.health.problems.join(" · ");
    $("namespace").textContent = v.namespace;
    $("updated").textContent = `updated ${new Date(v.now_ms).toLocaleTimeString()} · every ${REFRESH_MS / 1000}s`;
    document.title = `${level === "ok" ? "●" : level === "warn" ? "▲" : "■"} pedro-worker ops`;
  }

  function renderKpis(v) {
    const L = v.ledger;
    const topReason = Object.entries(L.rejected_by_reason)[0];
    const deadTotal = sum(Object.values(L.dead_lettered_by_reason));
    const backlog = sum(v.queues.map((q) => q.ready + q.delayed));
    const rec = L.reconcile;
    const threads = sum(v.workers.map((w) => w.threads || 0));
    fill($("kpis"),
      kpi("Events applied", `${fmtRate(L.rates.applied)}/s`, `${fmtInt(L.applied)} total`, "ok",
          sparkline(L.series.applied, COLORS.applied, 120, 34)),
      kpi("Duplicates skipped", fmtInt(L.duplicate), `${fmtRate(L.rates.duplicate)}/s now`, ""),
      kpi("Rejected", fmtInt(L.rejected), topReason ? `top: ${topReason[0]} (${fmtInt(topReason[1])})` : "none", L.rejected ? "warn" : ""),
      kpi("Dead letters", fmtInt(L.dead_lettered_now), `${fmtInt(deadTotal)} dead-lettered since counters began`,
          L.dead_lettered_now ? "warn" : "ok"),
      kpi("Worker processes", fmtInt(v.workers.length), `${threads} threads · backlog ${fmtInt(backlog)}`,
          v.workers.length ? "ok" : backlog ? "critical" : "warn"),
      kpi("Reconcile drift", rec ? fmtInt(rec.drift) : "—",
          rec ? `${fmtInt(rec.checked)} checked · ${fmtAge((v.now_ms - rec.at_ms) / 1000)} ago (${rec.source})` : "not run yet",
          rec ? (rec.drift ? "critical" : "ok") : ""));
  }

  function renderCharts(v) {
    const pick = (name) => addSeries(v.queues.map((q) => q.series[name]));
    lineChart($("chart-messages"), $("legend-messages"),
      ["processed", "failed", "retried", "dead"].map((name) => ({ name, color: COLORS[name], values: pick(name) })), v.bucket_s);
    lineChart($("chart-ledger"), $("legend-ledger"),
      ["applied", "duplicate", "rejected"].map((name) => ({ name, color: COLORS[name], values: v.ledger.series[name] })), v.bucket_s);
  }

  function numCell(n, cls) {
    return h("td", { class: `num ${n ? cls || "" : "zero"}`, text: fmtInt(n) });
  }
  function rateCell(r, cls) {
    return h("td", { class: `num ${r ? cls || "" : "zero"}`, text: fmtRate(r) });
  }

  function renderQueues(v) {
    const head = h("tr", {}, ["queue", "ready", "delayed", "in progress", "dead", "processed/s", "failed/s", "retried/s", "last 15 min"]
      .map((t, i) => h("th", { class: i && i < 8 ? "num" : "", text: t })));
    const rows = v.queues.map((q) => h("tr", { id: `queue-${q.name}` },
      h("td", { class: "name", text: q.name }), numCell(q.ready), numCell(q.delayed), numCell(q.in_progress),
      numCell(q.dead, "warnv"), rateCell(q.rates.processed), rateCell(q.rates.failed, "bad"), rateCell(q.rates.retried, "warnv"),
      h("td", { class: "spark" }, sparkline(q.series.processed, COLORS.processed))));
    fill($("queues"), h("thead", {}, head), h("tbody", {}, rows));
  }

  function bars(title, entries, cls) {
    const out = [h("h3", { text: title })];
    if (!entries.length) return out.concat(h("div", { class: "none", text: "none" }));
    const max = Math.max(1, ...entries.map(([, n]) => n));
    for (const [reason, n] of entries) {
      const bar = h("div", { class: `fill ${cls}` });
      bar.style.width = `${n ? Math.max(2, (n / max) * 100) : 0}%`;
      out.push(h("div", { class: "bar-row" }, h("code", { text: reason }), h("div", { class: "track" }, bar),
        h("span", { class: "n", text: fmtInt(n) })));
    }
    return out;
  }

  const stat = (label, value) => h("div", { class: "stat" }, h("span", { class: "muted", text: label }), h("b", { text: value }));

  function renderLedger(v) {
    const L = v.ledger;
    fill($("ledger"),
      h("h3", { text: "Since counters began" }),
      stat("applied", fmtInt(L.applied)), stat("duplicates skipped", fmtInt(L.duplicate)),
      stat("rejected", fmtInt(L.rejected)), stat("dead-lettered now", fmtInt(L.dead_lettered_now)),
      stat("publish → commit p50", fmtMs(L.latency_p50_ms)), stat("publish → commit p95", fmtMs(L.latency_p95_ms)),
      stat("events per message (avg)", L.batch_avg_events ?? "—"),
      stat("reconcile drift", L.reconcile ? fmtInt(L.reconcile.drift) : "not run yet"),
      bars("Rejected by reason", Object.entries(L.rejected_by_reason), "reject"),
      bars("Dead-lettered by reason", Object.entries(L.dead_lettered_by_reason), "dead"),
      bars("Found waiting by reason", Object.entries(L.waited_by_reason || {}), ""),
      bars("Retried by reason (held rows)", Object.entries(L.retried_by_reason), ""));
  }

  function renderWorkers(v) {
    const head = h("tr", {}, ["host", "pid", "threads", "queues", "up", "heartbeat", "processed"]
      .map((t, i) => h("th", { class: [1, 2, 4, 5, 6].includes(i) ? "num" : "", text: t })));
    const rows = v.workers.map((w) => h("tr", {},
      h("td", { class: "name", text: w.host }), h("td", { class: "num", text: w.pid ?? "?" }),
      h("td", { class: "num", text: w.threads ?? "?" }), h("td", {}, h("code", { text: (w.queues || []).join(" ") })),
      h("td", { class: "num", text: w.started_ms ? fmtAge((v.now_ms - w.started_ms) / 1000) : "?" }),
      h("td", { class: "num", text: `${fmtAge((v.now_ms - w.heartbeat_ms) / 1000)} ago` }),
      h("td", { class: "num", text: fmtInt(w.processed) })));
    if (!rows.length) rows.push(h("tr", {}, h("td", { class: "empty", colspan: 7, text: "No live worker process." })));
    const foot = v.other_clients ? h("tr", {}, h("td", { class: "muted", colspan: 7,
      text: `+ ${v.other_clients} other broker client(s): publishers, ingress` })) : null;
    fill($("workers"), h("thead", {}, head), h("tbody", {}, rows, foot));
  }

  function syncSelect(select, values, current) {
    const wanted = ["", ...values];
    const have = Array.from(select.options).map((o) => o.value);
    if (wanted.join("\n") !== have.join("\n")) {
      fill(select, wanted.map((value) => h("option", { value, text: value || "all" })));
    }
    select.value = current;
  }

  function renderDeadLetters(v) {
    syncSelect($("f-queue"), v.queue_names, state.queue);
    syncSelect($("f-reason"), v.dead_letter_reasons, state.reason);
    const letters = v.dead_letters;
    const total = v.ledger.dead_lettered_now;
    $("dlq-count").textContent = letters.length < total ? `${letters.length} shown of ${total}` : `${total}`;
    $("requeue-all").disabled = $("purge-all").disabled = !letters.length;
    const head = h("tr", {}, ["queue", "actor", "reason", "age", "retries", "events", "payload", ""]
      .map((t, i) => h("th", { class: [3, 4, 5].includes(i) ? "num" : "", text: t })));
    const rows = letters.map((d) => h("tr", { id: `dl-${d.queue}-${d.id}`, class: "dead-letter", "data-queue": d.queue, "data-id": d.id },
      h("td", { class: "name", text: d.queue }), h("td", {}, h("code", { text: d.actor })),
      h("td", { title: d.detail }, h("span", { class: `pill ${d.reason === "error" ? "error" : ""}`, text: d.reason })),
      h("td", { class: "num", text: fmtAge(d.age_s) }), h("td", { class: "num", text: d.retries }),
      h("td", { class: "num", text: d.events }),
      h("td", {}, h("div", { class: "preview", title: d.preview, text: d.preview })),
      h("td", { class: "actions" },
        h("button", { class: "btn small requeue", type: "button", onclick: () => act("requeue", { items: [{ queue: d.queue, id: d.id }] }) }, "Requeue"),
        h("button", { class: "btn small danger purge", type: "button",
          onclick: () => confirm(`Purge this dead letter from ${d.queue}? Its events are lost unless replayed.`) &&
            act("purge", { items: [{ queue: d.queue, id: d.id }] }) }, "Purge"))));
    if (!rows.length) rows.push(h("tr", {}, h("td", { class: "empty", colspan: 8, text: "No dead letters." })));
    fill($("dead-letters"), h("thead", {}, head), h("tbody", {}, rows));
  }

  function renderWaiting(v) {
    const w = v.waiting;
    if (!w || w.error) {
      $("waiting-count").textContent = w ? w.error : "· DATABASE_URL not set";
      fill($("waiting-reasons"));
      fill($("waiting-events"));
      return;
    }
    $("waiting-count").textContent = w.total
      ? `· ${fmtInt(w.total)} event${w.total === 1 ? "" : "s"} · oldest ${fmtAge(w.oldest_s)}` : "· none";
    const reasonHead = h("tr", {}, ["reason", "events", "oldest", "queues"]
      .map((t, i) => h("th", { class: [1, 2].includes(i) ? "num" : "", text: t })));
    const reasonRows = w.by_reason.map((r) => h("tr", { id: `waiting-reason-${r.reason}`, class: "waiting-reason" },
      h("td", {}, h("span", { class: "pill", text: r.reason })), h("td", { class: "num", text: fmtInt(r.events) }),
      h("td", { class: "num", text: fmtAge(r.oldest_s) }),
      h("td", {}, h("code", { text: Object.entries(r.queues).map(([q, n]) => `${q}: ${n}`).join(" · ") }))));
    if (!reasonRows.length) reasonRows.push(h("tr", {}, h("td", { class: "empty", colspan: 4, text: "Nothing waits." })));
    fill($("waiting-reasons"), h("thead", {}, reasonHead), h("tbody", {}, reasonRows));

    const head = h("tr", {}, ["age", "state", "queue", "type", "user", "reason", "waits for", "waited", "event id", ""]
      .map((t, i) => h("th", { class: [0, 7].includes(i) ? "num" : "", text: t })));
    const rows = (w.oldest || []).map((e) => h("tr", { class: "waiting-event", "data-id": e.event_id },
      h("td", { class: "num", text: fmtAge(e.age_s) }), h("td", { text: e.state }), h("td", { class: "name", text: e.queue }),
      h("td", {}, h("code", { text: e.event_type })), h("td", {}, h("code", { text: e.clerk_user_id ?? "—" })),
      h("td", { title: e.detail || "" }, h("span", { class: "pill", text: e.reason })),
      h("td", {}, h("code", { text: e.waits_for })), h("td", { class: "num", text: e.times_waited }),
      h("td", {}, h("code", { class: "event-id", text: e.event_id })),
      h("td", { class: "actions" },
        h("button", { class: "btn small release", type: "button",
          onclick: () => act("release", { event_ids: [e.event_id] }, "waiting") }, "Release"),
        h("button", { class: "btn small danger drop", type: "button", onclick: () => {
          const why = prompt(`Drop ${e.event_id}? It will never apply: a rejection "dropped" records who and why.\nWhy?`);
          if (why && why.trim()) act("drop", { event_ids: [e.event_id], reason: why.trim() }, "waiting");
        } }, "Drop"))));
    if (!rows.length) rows.push(h("tr", {}, h("td", { class: "empty", colspan: 10, text: "No waiting events." })));
    fill($("waiting-events"), h("thead", {}, head), h("tbody", {}, rows));
  }

  function renderCredits(v) {
    const c = v.credits;
    if (!c || c.error) {
      $("credits-summary").textContent = c ? `· ${c.error}` : "· DATABASE_URL not set";
      fill($("credits-expiry"));
      return;
    }
    const e = c.expiring_7d;
    $("credits-summary").textContent = `· ${fmtInt(e.credits)} expiring in 7 days`;
    fill($("credits-expiry"),
      h("h3", { text: "Expiring in the next 7 days" }),
      stat("credits", fmtInt(e.credits)), stat("users holding them", fmtInt(e.users)),
      h("h3", { text: `Expired in the last ${c.expired_by_day.length} days` }),
      stat("credits", fmtInt(c.expired_total)),
      stat("grants ended", fmtInt(sum(c.expired_by_day.map((d) => d.grants)))),
      bars("Expired per day (UTC)", c.expired_by_day.map((d) => [d.day, d.credits]), "dead"));
  }

  // Open holds past their expiry are what the grant sweep has not released yet: ~0 while it
  // runs, so any shows as an alert.
  function renderHolds(v) {
    const x = v.holds;
    if (!x || x.error) {
      $("holds-summary").textContent = x ? `· ${x.error}` : "· DATABASE_URL not set";
      fill($("holds"));
      return;
    }
    const o = x.open, d = x.overdue, r = x.resolved_24h;
    $("holds-summary").textContent = `· ${fmtInt(o.holds)} open · ${fmtInt(o.credits)} credits held` +
      (d.holds ? ` · ${fmtInt(d.holds)} overdue` : "");
    const overdue = stat("overdue (past expiry, not released)", fmtInt(d.holds));
    overdue.id = "holds-overdue";
    if (d.holds) overdue.classList.add("alert");
    fill($("holds"),
      h("h3", { text: "Open now" }),
      stat("holds", fmtInt(o.holds)), stat("credits held", fmtInt(o.credits)),
      overdue, stat("oldest overdue", d.holds ? fmtAge(d.oldest_s) : "—"),
      h("h3", { text: "Resolved in the last 24 h" }),
      stat("captured", fmtInt(r.captured.holds)), stat("credits charged", fmtInt(r.captured.charged)),
      stat("released", fmtInt(r.released.holds)), stat("expired", fmtInt(r.expired.holds)),
      bars("Resolved by status (24 h)", Object.entries(r).map(([status, n]) => [status, n.holds]), ""));
  }

  // `HTTP 503`, `no answer in 15 s`, `HTTP 503: upstream down` (as `notifications list` shows it).
  function lastAnswer(d) {
    const status = d.last_status, error = d.last_error;
    if (error) return status === null || error.includes(String(status)) ? error : `HTTP ${status}: ${error}`;
    return status === null ? "—" : `HTTP ${status}`;
  }

  // The lag is the age of the oldest notification not delivered yet: above lag_alert_s the
  // dispatcher is down or an endpoint keeps failing. A delivery failed for good waits for an
  // operator (Redeliver), so any shows as an alert. Endpoints show their host only.
  function renderNotifications(v) {
    const x = v.notifications;
    const off = $("notifications-off");
    if (!x || x.error) {
      $("notifications-summary").textContent = x ? `· ${x.error}` : "· DATABASE_URL not set";
      off.hidden = true;
      fill($("notifications"));
      fill($("notifications-failures"));
      return;
    }
    const p = x.pending, f = x.failed;
    const delivered = Object.entries(x.delivered_24h).filter(([, n]) => n);
    off.hidden = !x.config_error && x.enabled;
    off.className = `notice ${x.config_error ? "alert" : ""}`;
    off.textContent = x.config_error ? `Notifications are misconfigured: ${x.config_error}` :
      "Notifications are off: no endpoint is configured. To turn them on, set PEDRO_NOTIFY_URL (the app's " +
      "webhook URL) and PEDRO_NOTIFY_SECRET (whsec_…), or PEDRO_NOTIFY_ENDPOINTS for several, and run the " +
      "dispatcher (pedro-worker notify).";
    $("notifications-summary").textContent = (x.enabled ? "" : "· off ") +
      `· ${fmtInt(p.deliveries)} pending` + (p.deliveries ? ` · lag ${fmtAge(p.oldest_s)}` : "") +
      ` · ${fmtInt(f.deliveries)} failed · ${fmtInt(sum(delivered.map(([, n]) => n)))} delivered in 24 h`;
    const lag = stat("oldest pending (lag)", p.oldest_s === null ? "—" : fmtAge(p.oldest_s));
    lag.id = "notifications-lag";
    if (p.oldest_s > x.lag_alert_s) lag.classList.add("alert");
    const failed = stat("failed (retries ran out)", fmtInt(f.deliveries));
    failed.id = "notifications-failed";
    if (f.deliveries) failed.classList.add("alert");
    const configured = new Set(x.endpoints.filter((e) => e.configured).map((e) => e.name));
    const endpoints = x.endpoints.map((e) => {
      const oldest = e.pending ? ` (oldest ${fmtAge(e.oldest_s)})` : "";
      const el = stat(e.name, `${e.configured ? e.host : "NOT CONFIGURED"} · ${fmtInt(e.pending)} pending${oldest} · ${fmtInt(e.failed)} failed`);
      el.id = `notifications-endpoint-${e.name}`;
      if (!e.configured) el.classList.add("alert");
      return el;
    });
    fill($("notifications"),
      h("h3", { text: "Now" }),
      stat("pending", fmtInt(p.deliveries)), lag, stat("due now", fmtInt(p.due)), stat("in flight", fmtInt(p.in_flight)),
      failed, stat("failed in the last 24 h", fmtInt(f.last_24h)),
      h("h3", { text: "Endpoints" }), endpoints.length ? endpoints : h("div", { class: "none", text: "none configured" }),
      bars("Delivered in the last 24 h by type", delivered, ""));

    const head = h("tr", {}, ["last attempt", "seq", "type", "user", "endpoint", "tries", "last error", ""]
      .map((t, i) => h("th", { class: [0, 1, 5].includes(i) ? "num" : "", text: t })));
    const rows = f.latest.map((d) => h("tr", { class: "notification-failure", "data-seq": d.seq, "data-endpoint": d.endpoint },
      h("td", { class: "num", text: d.last_attempt_at ? `${fmtAge((v.now_ms - Date.parse(d.last_attempt_at)) / 1000)} ago` : "—" }),
      h("td", { class: "num", text: d.seq }), h("td", {}, h("code", { text: d.type })),
      h("td", {}, h("code", { text: d.clerk_user_id ?? "—" })), h("td", { class: "name", text: d.endpoint }),
      h("td", { class: "num", text: d.attempts }),
      h("td", {}, h("div", { class: "preview", title: d.last_error || "", text: lastAnswer(d) })),
      h("td", { class: "actions" },
        h("button", { class: "btn small redeliver", type: "button", disabled: !configured.has(d.endpoint),
          title: configured.has(d.endpoint) ? null : "endpoint not configured",
          onclick: () => confirm(`Redeliver notification ${d.seq} (${d.type}) to ${d.endpoint}? Same webhook id: the app dedupes it.`) &&
            act("redeliver", { seq: d.seq, endpoint: d.endpoint }, "notifications") }, "Redeliver"))));
    if (!rows.length) rows.push(h("tr", {}, h("td", { class: "empty", colspan: 8, text: "No failed deliveries." })));
    fill($("notifications-failures"), h("thead", {}, head), h("tbody", {}, rows));
  }

  function render(v) {
    state.view = v;
    renderHeader(v); renderKpis(v); renderCharts(v); renderQueues(v); renderLedger(v); renderWorkers(v);
    renderWaiting(v); renderDeadLetters(v); renderCredits(v); renderHolds(v); renderNotifications(v);
  }

  // --- data and actions ------------------------------------------------------------------------
  function banner(text) {
    const el = $("banner");
    el.hidden = !text;
    el.textContent = text || "";
  }
  function toast(text, error) {
    const el = $("toast");
    el.textContent = text;
    el.className = `toast ${error ? "error" : ""}`;
    el.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { el.hidden = true; }, 4000);
  }

  async function refresh() {
    clearTimeout(state.timer);
    const params = new URLSearchParams();
    if (state.queue) params.set("queue", state.queue);
    if (state.reason) params.set("reason", state.reason);
    try {
      const res = await fetch(`${BASE}/api/overview?${params}`, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (res.status === 401) { window.location.assign(`${BASE}/`); return; }
      const body = await res.json();
      if (!res.ok) throw new Error(body.error || `HTTP ${res.status}`);
      banner("");
      render(body);
    } catch (err) {
      banner(`Cannot refresh: ${err.message}`);
      $("health-dot").className = "dot critical";
    } finally {
      state.timer = setTimeout(refresh, REFRESH_MS);
    }
  }

  const VERBS = { requeue: ["Requeued", "message"], purge: ["Purged", "message"],
                  release: ["Released", "event"], drop: ["Dropped", "event"],
                  redeliver: ["Redelivered", "notification"] };
  const GONE = { dlq: "already gone", waiting: "not waiting", notifications: "pending already" };

  // kind: "dlq" (dead letters), "waiting" or "notifications"; the POST carries the page's CSRF token.
  async function act(action, body, kind = "dlq") {
    if (state.busy) return;
    state.busy = true;
    try {
      const res = await fetch(`${BASE}/api/${kind}/${action}`, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF, Accept: "application/json" },
        body: JSON.stringify(body),
      });
      const out = await res.json();
      if (!res.ok) throw new Error(out.error || `HTTP ${res.status}`);
      const [verb, noun] = VERBS[action];
      const gone = GONE[kind];
      const inFlight = out.in_flight ? ` (${out.in_flight} already on their way)` : "";
      toast(`${verb} ${out.done} ${noun}${out.done === 1 ? "" : "s"}${out.missing ? ` (${out.missing} ${gone})` : ""}${inFlight}`);
    } catch (err) {
      toast(`${action} failed: ${err.message}`, true);
    } finally {
      state.busy = false;
      refresh();
    }
  }

  function bulk(action) {
    const n = state.view ? state.view.dead_letters.length : 0;
    const scope = [state.queue && `queue ${state.queue}`, state.reason && `reason ${state.reason}`].filter(Boolean).join(", ") || "all queues";
    const what = action === "requeue" ? "Requeue" : "Purge";
    if (confirm(`${what} every dead letter matching ${scope}${n >= 50 ? " (more than shown)" : ` (${n})`}?`)) {
      act(action, { all: true, queue: state.queue || null, reason: state.reason || null });
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("f-queue").addEventListener("change", (e) => { state.queue = e.target.value; refresh(); });
    $("f-reason").addEventListener("change", (e) => { state.reason = e.target.value; refresh(); });
    $("requeue-all").addEventListener("click", () => bulk("requeue"));
    $("purge-all").addEventListener("click", () => bulk("purge"));
    refresh();
  });
})();
