// The pexen run report: draws the data of the page (the script element
// "pexen-data", written by pexen/harness/htmlreport.py). Text from the
// journal is only ever set as text (textContent), never parsed as HTML.
(function () {
  "use strict";
  var started = performance.now();
  var D = JSON.parse(document.getElementById("pexen-data").textContent);
  var T = D.tasks, N = T.key.length, O = D.outcomes, RUN = D.run;
  var PAGE = 100;

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      for (var name in attrs) {
        if (name === "text") node.textContent = attrs[name];
        else if (name === "className") node.className = attrs[name];
        else node.setAttribute(name, attrs[name]);
      }
    }
    if (children) {
      for (var i = 0; i < children.length; i++) {
        var c = children[i];
        if (c === null || c === undefined) continue;
        node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
      }
    }
    return node;
  }
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function clock(epoch) {
    var d = new Date(epoch * 1000);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }
  function duration(s) {
    if (s === null || s === undefined) return "";
    if (s < 1) return Math.round(s * 1000) + " ms";
    if (s < 60) return (Math.round(s * 100) / 100) + " s";
    var m = Math.floor(s / 60), h = Math.floor(m / 60);
    if (h) return h + " h " + (m % 60) + " min";
    return m + " min " + Math.round(s % 60) + " s";
  }
  function at(rel) { return rel === null ? "?" : clock(RUN.created + rel) + " (+" + duration(rel) + ")"; }
  function badge(state) {
    var b = el("span", {className: "badge", text: state});
    b.style.background = D.colours[state] || "#424a53";
    return b;
  }

  // -- the run ---------------------------------------------------------------
  var crashes = D.gaps.filter(function (g) { return g.kind === "crash"; }).length;
  var reboots = D.gaps.filter(function (g) { return g.kind === "reboot"; }).length;
  $("title").textContent = RUN.suite + ": run " + RUN.id + " " + (RUN.state === "finished" ?
    (RUN.exit_code === 0 ? "passed" : "finished, some failed") :
    RUN.gone ? "unfinished (its controller died)" : RUN.state);
  var facts = [
    ["Suite", RUN.target],
    ["Host", RUN.host],
    ["Journal", RUN.journal],
    ["Started", clock(RUN.created)],
    ["Finished", RUN.finished ? clock(RUN.finished) : "not yet"],
    ["Duration", duration(RUN.duration)],
    ["State", RUN.state + (RUN.exit_code !== null ? " (exit code " + RUN.exit_code + ")" : "") +
      (RUN.gone ? "; its controller is gone: pexen-harness resume continues it" : "")],
    ["Workers", RUN.dask ? "the Dask cluster at " + RUN.dask + (RUN.workers ? " (-j " +
      RUN.workers + ")" : "") : (RUN.workers || "?") + " (" + (RUN.pool || "?") + " pool)"],
    ["Controller sessions", D.sessions.length + " (" + crashes + " died, " + reboots + " reboots)"],
    ["Tasks", String(N)]
  ];
  var dl = $("facts");
  facts.forEach(function (f) { dl.appendChild(el("dt", {text: f[0]})); dl.appendChild(el("dd", {text: f[1]})); });
  $("generated").textContent = "Written by pexen-harness at " + clock(D.generated) +
    " from the journal as it was then.";

  // -- sessions --------------------------------------------------------------
  var HOW = {finished: "finished", stopped: "stopped (a signal, or the journal failed)",
    rebooting: "the machine rebooted (a task asked for it)", died: "died (crash, SIGKILL, power): " +
    "the time is its last sign of life", running: "still running"};
  var sbody = $("sessions").tBodies[0];
  D.sessions.forEach(function (s, i) {
    sbody.appendChild(el("tr", null, [
      el("td", {text: String(i + 1)}),
      el("td", {text: at(s.start)}),
      el("td", {text: s.end === null ? "" : at(s.end)}),
      el("td", {text: HOW[s.ended] || s.ended || ""}),
      el("td", {text: s.pid === null ? "" : String(s.pid)})]));
  });
  $("sessions-note").textContent = D.sessions.length === 1 ? "One controller ran the whole run." :
    D.sessions.length + " controllers ran this run, each resuming where the one before stopped.";

  // -- counts and filter ------------------------------------------------------
  var show = {};           // outcome index -> shown
  var only = null;         // the outcome a count button shows alone
  var filterBox = $("filter");
  var checks = [];
  O.forEach(function (name, i) {
    show[i] = true;
    var n = RUN.counts[name] || 0;
    if (!n) return;
    var box = el("input", {type: "checkbox", id: "show-" + name, "data-outcome": name});
    box.checked = true;
    box.addEventListener("change", function () { show[i] = box.checked; only = null; pressCounts(); refilter(); });
    checks.push([i, box]);
    filterBox.appendChild(el("label", {"for": "show-" + name}, [box, " " + name + " (" + n + ")"]));
  });
  var counts = $("counts");
  var allButton = el("button", {type: "button", className: "all", "aria-pressed": "true",
    text: "all " + N});
  allButton.addEventListener("click", function () { setOnly(null); });
  counts.appendChild(allButton);
  var countButtons = [];
  O.forEach(function (name, i) {
    var n = RUN.counts[name] || 0;
    if (!n) return;
    var b = el("button", {type: "button", "aria-pressed": "false", "data-outcome": name,
      text: name + " " + n});
    b.style.background = D.colours[name];
    b.addEventListener("click", function () { setOnly(only === i ? null : i); });
    countButtons.push([i, b]);
    counts.appendChild(b);
  });
  function pressCounts() {
    allButton.setAttribute("aria-pressed", only === null && checks.every(function (c) { return c[1].checked; }) ? "true" : "false");
    countButtons.forEach(function (c) { c[1].setAttribute("aria-pressed", only === c[0] ? "true" : "false"); });
  }
  function setOnly(i) {
    only = i;
    checks.forEach(function (c) { c[1].checked = i === null || c[0] === i; show[c[0]] = c[1].checked; });
    pressCounts();
    refilter();
  }

  // -- the task table --------------------------------------------------------
  var reported = {};   // task -> [count in its last attempt, worst outcome]
  var RANK = {pass: 0, skip: 1, warn: 2, fail: 3, timeout: 4, error: 5};
  Object.keys(D.results).forEach(function (k) {
    var i = +k, last = T.attempts[i], n = 0, worst = null;
    D.results[k].forEach(function (r) {
      if (r[0] !== last) return;
      n++;
      if (worst === null || (RANK[r[2]] || 0) > (RANK[worst] || 0)) worst = r[2];
    });
    if (n) reported[i] = [n, worst];
  });
  var sortCol = null, sortDir = 1, search = "", page = 0, view = [];
  var open = {};   // task -> its detail row is shown
  var COLUMN = {
    key: function (i) { return T.key[i]; },
    state: function (i) { return O[T.state[i]]; },
    time: function (i) { return T.time[i]; },
    attempts: function (i) { return T.attempts[i]; },
    reboots: function (i) { return T.reboots[i]; },
    results: function (i) { return reported[i] ? reported[i][0] : 0; },
    message: function (i) { return T.message[i] || ""; }
  };
  function refilter() {
    var needle = search.toLowerCase();
    view = [];
    for (var i = 0; i < N; i++) {
      if (!show[T.state[i]]) continue;
      if (needle && T.key[i].toLowerCase().indexOf(needle) < 0) continue;
      view.push(i);
    }
    if (sortCol) {
      var get = COLUMN[sortCol], dir = sortDir;
      var values = {};
      view.forEach(function (i) { values[i] = get(i); });
      view.sort(function (a, b) {
        var x = values[a], y = values[b];
        return (x < y ? -dir : x > y ? dir : a - b);
      });
    }
    page = 0;
    drawTable();
  }
  var tbody = $("tasks").tBodies[0];
  function drawTable() {
    var pages = Math.max(1, Math.ceil(view.length / PAGE));
    if (page >= pages) page = pages - 1;
    var rows = document.createDocumentFragment();
    var from = page * PAGE, to = Math.min(view.length, from + PAGE);
    for (var v = from; v < to; v++) {
      var i = view[v];
      var keyButton = el("button", {type: "button", "aria-expanded": open[i] ? "true" : "false",
        "aria-controls": "detail-" + i, text: T.key[i]});
      keyButton.addEventListener("click", toggler(i));
      var rep = reported[i];
      var tr = el("tr", {id: "task-" + i, "data-outcome": O[T.state[i]]}, [
        el("td", {className: "key"}, [keyButton]),
        el("td", null, [badge(O[T.state[i]])]),
        el("td", {className: "num", text: duration(T.time[i])}),
        el("td", {className: "num", text: String(T.attempts[i])}),
        el("td", {className: "num", text: T.reboots[i] ? String(T.reboots[i]) : ""}),
        el("td", {text: rep ? rep[0] + " (worst " + rep[1] + ")" : ""}),
        el("td", {className: "message", text: T.message[i] || ""})]);
      rows.appendChild(tr);
      if (open[i]) rows.appendChild(detailRow(i));
    }
    tbody.replaceChildren(rows);
    $("page-info").textContent = view.length ? "tasks " + (from + 1) + "-" + to + " of " +
      view.length + " (page " + (page + 1) + " of " + pages + ")" : "no task";
    $("shown").textContent = view.length === N ? "All " + N + " tasks." :
      view.length + " of " + N + " tasks shown.";
    $("first").disabled = $("prev").disabled = page === 0;
    $("next").disabled = $("last").disabled = page >= pages - 1;
  }
  function toggler(i) {
    return function () { open[i] = !open[i]; drawTable(); };
  }
  function detailRow(i) {
    var parts = [];
    if (T.message[i]) parts.push(el("p", null, [el("strong", {text: "Reason: "}), T.message[i]]));
    if (T.group[i] >= 0) parts.push(el("p", {text: "Exclusivity group: " + D.groups[T.group[i]]}));
    var tb = D.tracebacks[i];
    if (tb) parts.push(el("details", {open: ""}, [el("summary", {text: "Traceback"}), el("pre", {text: tb})]));
    var res = D.results[i];
    if (res) {
      var rt = el("table", {className: "results"}, [el("thead", null, [el("tr", null, [
        el("th", {scope: "col", text: "Attempt"}), el("th", {scope: "col", text: "Reported result"}),
        el("th", {scope: "col", text: "Outcome"}), el("th", {scope: "col", text: "Message"})])])]);
      var body = el("tbody");
      res.forEach(function (r) {
        body.appendChild(el("tr", null, [el("td", {text: String(r[0])}), el("td", {text: r[1]}),
          el("td", null, [badge(r[2])]), el("td", {text: r[3] || ""})]));
      });
      rt.appendChild(body);
      parts.push(rt);
    }
    var outs = D.output[i];
    if (outs) {
      outs.forEach(function (o) {
        var number = o[0], outcome = o[1] === null ? null : O[o[1]];
        [["stdout", o[2], o[3]], ["stderr", o[4], o[5]]].forEach(function (s) {
          if (s[2] === null) return;
          var label = "Attempt " + number + (outcome ? " (" + outcome + ")" : "") + ": " + s[0] +
            (s[1] === null ? "" : " (" + s[1].length + " characters)");
          parts.push(el("details", {"data-stream": s[0], "data-attempt": String(number)}, [
            el("summary", {text: label}),
            s[1] === null ? el("p", {text: "Not in this page (its room for output was used up)."}) :
              el("pre", {text: s[1]}),
            el("p", {className: "note", text: "The whole stream: " + s[2]})]));
        });
      });
    } else if (T.attempts[i]) {
      parts.push(el("p", {className: "note", text: "No output captured."}));
    }
    if (!parts.length) parts.push(el("p", {className: "note", text: "Not run."}));
    return el("tr", {className: "detail", id: "detail-" + i}, [el("td", {colspan: "7"}, parts)]);
  }
  $("first").addEventListener("click", function () { page = 0; drawTable(); });
  $("prev").addEventListener("click", function () { page--; drawTable(); });
  $("next").addEventListener("click", function () { page++; drawTable(); });
  $("last").addEventListener("click", function () { page = 1e9; drawTable(); });
  var searchTimer = null;
  $("search").addEventListener("input", function (e) {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(function () { search = e.target.value; refilter(); }, N > 20000 ? 150 : 0);
  });
  Array.prototype.forEach.call($("tasks").tHead.rows[0].cells, function (th) {
    th.querySelector("button").addEventListener("click", function () {
      var col = th.getAttribute("data-col");
      if (sortCol === col) sortDir = -sortDir; else { sortCol = col; sortDir = 1; }
      Array.prototype.forEach.call(th.parentNode.cells, function (c) { c.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
      refilter();
    });
  });
  function showTask(i) {
    search = T.key[i];
    $("search").value = search;
    setOnly(null);
    var v = view.indexOf(i);
    page = Math.floor(Math.max(v, 0) / PAGE);
    open[i] = true;
    drawTable();
    var row = $("task-" + i);
    if (row) { row.scrollIntoView({block: "center"}); row.querySelector("button").focus(); }
  }

  // -- the timeline ----------------------------------------------------------
  var B = D.bars, NB = B.length / 6, LANES = Math.max(D.lanes, 1);
  var lanes = [];
  for (var l = 0; l < LANES; l++) lanes.push([]);
  for (var b = 0; b < NB; b++) lanes[B[b * 6 + 5]].push(b);   // each by start (bars come sorted)
  var canvas = $("timeline"), ctx = canvas.getContext("2d"), tip = $("tooltip");
  var AXIS = 22, BAND = D.group_spans.length ? 18 : 0, MARKS = 18;
  var laneH = Math.max(3, Math.min(18, Math.floor(480 / LANES)));
  var height = AXIS + BAND + LANES * laneH + MARKS;
  var end = Math.max(RUN.end || 0, 0.001);
  for (b = 0; b < NB; b++) end = Math.max(end, B[b * 6 + 3]);
  var v0 = 0, v1 = end * 1.01, width = 0;
  var sel = -1;   // the bar chosen with the keyboard (-1: none)
  var hatch = null;
  function sizeCanvas() {
    var ratio = window.devicePixelRatio || 1;
    width = canvas.parentNode.clientWidth || 800;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    canvas.style.height = height + "px";
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  }
  function x(t) { return (t - v0) / (v1 - v0) * width; }
  function tAt(px) { return v0 + px / width * (v1 - v0); }
  function firstEnding(list, t) {   // the first bar of a lane ending at or after t
    var lo = 0, hi = list.length;
    while (lo < hi) {
      var mid = (lo + hi) >> 1;
      if (B[list[mid] * 6 + 3] < t) lo = mid + 1; else hi = mid;
    }
    return lo;
  }
  function niceStep(span) {
    var raw = span / Math.max(2, width / 110), p = Math.pow(10, Math.floor(Math.log10(raw)));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= raw) return steps[i] * p;
    return 10 * p;
  }
  function draw() {
    ctx.clearRect(0, 0, width, height);
    var top = AXIS + BAND, bottom = height - MARKS;
    // gaps: the controller dead, the machine rebooting
    if (!hatch) {
      var h = document.createElement("canvas");
      h.width = h.height = 8;
      var hc = h.getContext("2d");
      hc.strokeStyle = getComputedStyle(document.documentElement).getPropertyValue("--gap") || "#59636e";
      hc.lineWidth = 1.5;
      hc.beginPath(); hc.moveTo(0, 8); hc.lineTo(8, 0); hc.stroke();
      hatch = ctx.createPattern(h, "repeat");
    }
    ctx.font = "12px system-ui, sans-serif";
    D.gaps.forEach(function (g) {
      var a = x(g.start), z = x(g.end === null ? end : g.end);
      if (z < 0 || a > width) return;
      ctx.fillStyle = hatch;
      ctx.fillRect(a, AXIS, Math.max(z - a, 2), bottom - AXIS);
    });
    // bars
    for (var l = 0; l < LANES; l++) {
      var list = lanes[l], y = top + l * laneH, lastPx = -1, lastO = -1;
      for (var k = firstEnding(list, v0); k < list.length; k++) {
        var b6 = list[k] * 6, s = B[b6 + 2];
        if (s > v1) break;
        var a = x(s), z = x(B[b6 + 3]), o = B[b6 + 4];
        if (z - a < 1) {
          var px = Math.floor(a);
          if (px === lastPx && o === lastO) continue;
          lastPx = px; lastO = o;
          z = a + 1;
        }
        ctx.fillStyle = D.colours[O[o]];
        ctx.fillRect(a, y + 1, z - a, laneH - 2);
        if (z - a > 70 && laneH >= 14) {
          ctx.save();
          ctx.beginPath(); ctx.rect(a, y, z - a, laneH); ctx.clip();
          ctx.fillStyle = "#ffffff";
          ctx.fillText(O[o].toUpperCase() + " " + T.key[B[b6]], Math.max(a, 0) + 3, y + laneH - 4);
          ctx.restore();
        }
      }
    }
    // the bar chosen with the keyboard: outlined
    if (sel >= 0) {
      var sb = sel * 6, sa = x(B[sb + 2]), sz = Math.max(x(B[sb + 3]), sa + 2);
      ctx.lineWidth = 2;
      ctx.strokeStyle = "#1f2328";
      ctx.strokeRect(sa - 1, top + B[sb + 5] * laneH, sz - sa + 2, laneH);
      ctx.lineWidth = 1;
    }
    // groups
    D.group_spans.forEach(function (g) {
      var a = x(g[1]), z = x(g[2]);
      if (z < 0 || a > width) return;
      ctx.fillStyle = "#d1d9e0";
      ctx.fillRect(a, AXIS + 2, Math.max(z - a, 1), BAND - 4);
      ctx.save(); ctx.beginPath(); ctx.rect(a, AXIS, z - a, BAND); ctx.clip();
      ctx.fillStyle = "#1f2328";
      ctx.fillText("group " + D.groups[g[0]], Math.max(a, 0) + 3, AXIS + BAND - 5);
      ctx.restore();
    });
    // resumes, and the words for the gaps (in the strip below the lanes)
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, bottom, width, MARKS);
    ctx.strokeStyle = "#1f2328";
    ctx.fillStyle = "#1f2328";
    ctx.setLineDash([4, 3]);
    D.sessions.forEach(function (s, i) {
      if (i === 0) return;
      var a = x(s.start);
      if (a < 0 || a > width) return;
      ctx.beginPath(); ctx.moveTo(a, AXIS); ctx.lineTo(a, height); ctx.stroke();
      ctx.fillText("resumed", a + 3, height - 5);
    });
    ctx.setLineDash([]);
    D.gaps.forEach(function (g) {
      var a = x(g.start), z = x(g.end === null ? end : g.end);
      if (z < 0 || a > width) return;
      var word = g.kind === "crash" ? "controller dead" : "reboot";
      var w = ctx.measureText(word).width;
      if (z - a > w + 6 || g.end === null) ctx.fillText(word, Math.max(a, 0) + 3, height - 5);
      else if (z - a > 8) ctx.fillText(g.kind === "crash" ? "†" : "R", a + 2, height - 5);
    });
    // the axis
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, width, AXIS);
    ctx.fillStyle = "#1f2328";
    ctx.strokeStyle = "#59636e";
    var step = niceStep(v1 - v0);
    for (var t = Math.ceil(v0 / step) * step; t <= v1; t += step) {
      var tx = x(t);
      ctx.beginPath(); ctx.moveTo(tx, AXIS - 6); ctx.lineTo(tx, AXIS); ctx.stroke();
      ctx.fillText("+" + duration(Math.round(t * 1000) / 1000), tx + 2, AXIS - 8);
    }
    $("range-from").value = Math.max(0, Math.round(v0 * 1000) / 1000);
    $("range-to").value = Math.round(v1 * 1000) / 1000;
  }
  function zoom(factor, around) {
    var c = around === undefined ? (v0 + v1) / 2 : around;
    var span = Math.max((v1 - v0) * factor, 0.001);
    v0 = c - (c - v0) * factor;
    v1 = v0 + span;
    draw();
  }
  function hit(px, py) {
    var t = tAt(px), slack = (v1 - v0) / width * 3;
    if (py < AXIS) return null;
    if (py < AXIS + BAND) {
      for (var g = 0; g < D.group_spans.length; g++) {
        var s = D.group_spans[g];
        if (t >= s[1] - slack && t <= s[2] + slack) return {group: s};
      }
      return null;
    }
    var l = Math.floor((py - AXIS - BAND) / laneH);
    if (l >= 0 && l < LANES) {
      var list = lanes[l];
      for (var k = firstEnding(list, t - slack); k < list.length; k++) {
        var b6 = list[k] * 6;
        if (B[b6 + 2] > t + slack) break;
        return {bar: list[k]};
      }
    }
    for (var i = 0; i < D.gaps.length; i++) {
      var gp = D.gaps[i];
      if (t >= gp.start && t <= (gp.end === null ? end : gp.end)) return {gap: gp};
    }
    return null;
  }
  function describe(h) {
    if (h.bar !== undefined) {
      var b6 = h.bar * 6, o = O[B[b6 + 4]];
      return T.key[B[b6]] + "\nattempt " + B[b6 + 1] + ": " + o + (T.attempts[B[b6]] === B[b6 + 1] ?
        "" : " (the task ended " + O[T.state[B[b6]]] + ")") + "\nstarted  " + at(B[b6 + 2]) +
        "\nended    " + (o === "running" ? "(still running)" : at(B[b6 + 3])) +
        "\ntook     " + duration(B[b6 + 3] - B[b6 + 2]) + "\nlane " + (B[b6 + 5] + 1);
    }
    if (h.gap) {
      return (h.gap.kind === "crash" ? "the controller was dead (last sign of life to resume)" :
        "the machine rebooted") + "\nfrom " + at(h.gap.start) + "\nto   " +
        (h.gap.end === null ? "(not resumed yet)" : at(h.gap.end));
    }
    return "exclusivity group " + D.groups[h.group[0]] + "\nfrom " + at(h.group[1]) + "\nto   " + at(h.group[2]);
  }
  var drag = null;
  canvas.addEventListener("mousemove", function (e) {
    var r = canvas.getBoundingClientRect(), px = e.clientX - r.left, py = e.clientY - r.top;
    if (drag) {
      var dt = (drag.x - px) / width * (v1 - v0);
      v0 = drag.v0 + dt; v1 = drag.v1 + dt;
      draw();
      return;
    }
    var h = hit(px, py);
    if (!h) { tip.hidden = true; canvas.style.cursor = "grab"; return; }
    canvas.style.cursor = h.bar !== undefined ? "pointer" : "grab";
    tip.textContent = describe(h);
    tip.hidden = false;
    var left = Math.min(px + 14, width - tip.offsetWidth - 4);
    tip.style.left = Math.max(0, left) + "px";
    tip.style.top = (py + 16) + "px";
  });
  canvas.addEventListener("mouseleave", function () { tip.hidden = true; drag = null; });
  canvas.addEventListener("mousedown", function (e) {
    var r = canvas.getBoundingClientRect();
    drag = {x: e.clientX - r.left, v0: v0, v1: v1, moved: false, y: e.clientY - r.top};
  });
  window.addEventListener("mouseup", function (e) {
    if (!drag) return;
    var r = canvas.getBoundingClientRect(), px = e.clientX - r.left;
    var was = drag;
    drag = null;
    if (Math.abs(px - was.x) < 3) {
      var h = hit(px, e.clientY - r.top);
      if (h && h.bar !== undefined) showTask(B[h.bar * 6]);
    }
  });
  canvas.addEventListener("wheel", function (e) {
    e.preventDefault();
    var r = canvas.getBoundingClientRect();
    zoom(e.deltaY > 0 ? 1.25 : 0.8, tAt(e.clientX - r.left));
  }, {passive: false});
  // The keyboard: the timeline takes the focus; the arrows choose a bar (left
  // and right in time order, up and down to the nearest bar of the next
  // lane), Enter shows its task, + and - zoom, Escape lets go. What the bar
  // is goes to a live region, for screen readers, and to the tooltip.
  var live = $("timeline-live");
  canvas.tabIndex = 0;
  function choose(bar) {
    if (bar < 0 || bar >= NB) return;
    sel = bar;
    var b6 = bar * 6, s = B[b6 + 2], e = B[b6 + 3], span = v1 - v0;
    if (s < v0 || e > v1) {   // keep it in view
      v0 = e - s >= span ? s : (s + e) / 2 - span / 2;
      v1 = v0 + span;
    }
    draw();
    var text = describe({bar: bar});
    live.textContent = text.replace(/\n/g, "; ");
    tip.textContent = text;
    tip.hidden = false;
    var left = Math.min(Math.max(x(s), 0) + 14, width - tip.offsetWidth - 4);
    tip.style.left = Math.max(0, left) + "px";
    tip.style.top = (AXIS + BAND + (B[b6 + 5] + 1) * laneH + 4) + "px";
  }
  function nearestIn(l, t) {   // the bar of lane l starting nearest t (-1: none)
    var list = lanes[l], best = -1, gap = Infinity;
    for (var k = 0; k < list.length; k++) {
      var d = Math.abs(B[list[k] * 6 + 2] - t);
      if (d < gap) { gap = d; best = list[k]; }
    }
    return best;
  }
  canvas.addEventListener("keydown", function (e) {
    var k = e.key, here = sel >= 0 ? B[sel * 6 + 2] : v0;
    if (k === "ArrowRight") choose(sel < 0 ? 0 : Math.min(sel + 1, NB - 1));
    else if (k === "ArrowLeft") choose(sel < 0 ? 0 : Math.max(sel - 1, 0));
    else if (k === "Home") choose(0);
    else if (k === "End") choose(NB - 1);
    else if (k === "ArrowUp" || k === "ArrowDown") {
      var step = k === "ArrowUp" ? -1 : 1, l = sel >= 0 ? B[sel * 6 + 5] : (step > 0 ? -1 : LANES);
      for (l += step; l >= 0 && l < LANES; l += step) {
        var found = nearestIn(l, here);
        if (found >= 0) { choose(found); break; }
      }
    } else if (k === "Enter" || k === " ") {
      if (sel >= 0) showTask(B[sel * 6]);
    } else if (k === "+" || k === "=") zoom(0.5, sel >= 0 ? here : undefined);
    else if (k === "-") zoom(2, sel >= 0 ? here : undefined);
    else if (k === "Escape") { sel = -1; tip.hidden = true; live.textContent = ""; draw(); }
    else return;
    e.preventDefault();
  });
  canvas.addEventListener("blur", function () { if (sel >= 0) tip.hidden = true; });
  $("zoom-in").addEventListener("click", function () { zoom(0.5); });
  $("zoom-out").addEventListener("click", function () { zoom(2); });
  $("zoom-all").addEventListener("click", function () { v0 = 0; v1 = end * 1.01; draw(); });
  $("range-apply").addEventListener("click", function () {
    var a = parseFloat($("range-from").value), z = parseFloat($("range-to").value);
    if (isFinite(a) && isFinite(z) && z > a) { v0 = a; v1 = z; draw(); }
  });
  window.addEventListener("resize", function () { sizeCanvas(); draw(); });
  var legend = $("legend");
  var present = {};
  for (b = 0; b < NB; b++) present[B[b * 6 + 4]] = true;
  O.forEach(function (name, i) {
    if (!present[i] && !RUN.counts[name]) return;
    var li = el("li", {text: name});
    li.style.setProperty("--swatch", D.colours[name]);
    legend.appendChild(li);
  });
  legend.appendChild(el("li", {className: "gap-crash", text: "controller dead / reboot (hatched)"}));
  legend.appendChild(el("li", {text: "dashed line: a resume"}));
  $("timeline-summary").textContent = NB + " attempts in " + D.lanes + " lanes (a lane is a " +
    "worker slot) over " + duration(end) + "; " + crashes + " controller deaths, " + reboots +
    " reboots, " + (D.sessions.length - 1) + " resumes." + (D.groups.length ? " Groups: " +
    D.groups.join(", ") + "." : "") + " The table below has every task in words.";
  canvas.setAttribute("aria-label", "Timeline of the run: " + $("timeline-summary").textContent);

  sizeCanvas();
  draw();
  refilter();
  window.pexenReport = {renderMs: performance.now() - started, readyAt: performance.now(),
    tasks: N, bars: NB,
    showTask: showTask, view: function () { return [v0, v1]; }, x: x,
    chosen: function () { return sel < 0 ? null : [B[sel * 6], B[sel * 6 + 1]]; },
    barSpot: function (task) {   // the middle of the task's last bar, in the canvas
      for (var k = NB - 1; k >= 0; k--) {
        if (B[k * 6] !== task) continue;
        var a = Math.max(x(B[k * 6 + 2]), 0), z = Math.min(x(B[k * 6 + 3]), width);
        if (z < a) return null;
        return [(a + z) / 2, AXIS + BAND + B[k * 6 + 5] * laneH + laneH / 2];
      }
      return null;
    }};
  document.body.setAttribute("data-ready", "1");
})();
