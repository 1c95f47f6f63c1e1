/* The dashboard's little bit of script: the live-calls page (polling, timers, listening in),
   the audit trail's "check again" badge, and the exceptions form's "why not" field.
   Plain script, no build step, nothing from another site; served under a CSP without
   'unsafe-inline', so there is no inline script or style anywhere. */
(function () {
  "use strict";

  var body = document.body;
  var POLL_MS = 3000;
  var KEEPALIVE_MS = 60000;
  var LISTENING_KEY = "callflow.listening";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  /* fetch JSON; a 401 (signed out, or idle too long) goes to the sign-in page. */
  function api(url, options) {
    options = options || {};
    var method = options.method || "GET";
    var headers = { "Accept": "application/json" };
    if (options.body !== undefined) { headers["Content-Type"] = "application/json"; }
    if (method !== "GET") { headers["X-CSRF-Token"] = csrfToken(); }
    if (options.poll) { headers["X-Callflow-Poll"] = "1"; }
    return fetch(url, {
      method: method, headers: headers, credentials: "same-origin", cache: "no-store",
      body: options.body === undefined ? undefined : JSON.stringify(options.body)
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (response.status === 401 && body.dataset.loginUrl) {
          window.location.assign(body.dataset.loginUrl);
        }
        return { status: response.status, ok: response.ok, data: data };
      });
    });
  }

  function twoDigits(n) { return (n < 10 ? "0" : "") + n; }

  function duration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    return (h ? h + ":" + twoDigits(m) : twoDigits(m)) + ":" + twoDigits(s);
  }

  function spoken(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var m = Math.floor(seconds / 60), s = seconds % 60;
    if (!m) { return s + (s === 1 ? " second" : " seconds"); }
    return m + (m === 1 ? " minute" : " minutes") + (s ? " " + s + (s === 1 ? " second" : " seconds") : "");
  }

  /* ---------------------------------------------------------------- the live-calls page -- */

  function livePage() {
    var offset = Date.parse(body.dataset.serverNow) - Date.now();
    if (isNaN(offset)) { offset = 0; }
    var serverNow = function () { return Date.now() + offset; };
    var isManager = body.dataset.role === "manager";
    var phoneSet = body.dataset.phoneSet === "yes";
    var phoneLabel = body.dataset.phoneLabel || "";
    var callsUrl = body.dataset.callsUrl;
    var listenUrl = body.dataset.listenUrl;
    var stopUrl = body.dataset.stopUrl;
    var sessionUrl = body.dataset.sessionUrl;
    var template = document.getElementById("call-template");
    var status = document.getElementById("page-status");
    var updated = document.getElementById("updated");
    var banner = document.getElementById("listening");
    var stopButton = document.getElementById("stop-listening");
    var cards = {};
    var sections = {};
    var listening = load();
    var lastCalls = [];
    var failures = 0;
    var lastSeen = serverNow();
    var lastActivity = Date.now();

    Array.prototype.forEach.call(document.querySelectorAll("[data-helpline]"), function (s) {
      sections[s.dataset.helpline] = s;
    });

    function say(text) { status.textContent = text; }

    /* The page cannot reach the service: say so as an error, mark what is shown as stale
       (it is the last known state, not the present one) and offer no Listen until the
       service answers again. */
    function trouble(text) {
      failures += 1;
      status.dataset.trouble = "1";
      status.classList.add("page-status-error");
      say(text);
      body.classList.add("is-stale");
      Object.keys(cards).forEach(function (id) { markStale(cards[id], true); });
    }

    function recovered() {
      failures = 0;
      body.classList.remove("is-stale");
      if (status.dataset.trouble) {
        say("");
        delete status.dataset.trouble;
        status.classList.remove("page-status-error");
      }
    }

    function markStale(card, stale) {
      card.classList.toggle("call-stale", stale);
      card.querySelector("[data-stale]").hidden = !stale;
      var listen = card.querySelector("[data-listen]");
      listen.disabled = stale;
      if (stale) {
        listen.setAttribute("aria-disabled", "true");
        card.querySelector("[data-submit]").disabled = true;
      } else {
        listen.removeAttribute("aria-disabled");
        card.querySelector("[data-submit]").disabled = false;
      }
    }

    /* The Open now / Closed now pill of each helpline, as the service says it is. */
    function updatePills(helplines) {
      (helplines || []).forEach(function (h) {
        var section = sections[h.name];
        var pill = section && section.querySelector(".pill");
        if (!pill) { return; }
        pill.className = "pill " + (h.open ? "pill-open" : "pill-closed");
        pill.textContent = h.open ? "Open now" : "Closed now";
      });
    }

    /* A time of day as the helplines tell it (their own time zone, whatever the browser's). */
    function clockTime(millis) {
      try {
        return new Intl.DateTimeFormat("en-GB", { hour: "2-digit", minute: "2-digit",
          second: "2-digit", timeZone: body.dataset.zone }).format(new Date(millis));
      } catch (e) {
        var d = new Date(millis);
        return twoDigits(d.getHours()) + ":" + twoDigits(d.getMinutes()) + ":" + twoDigits(d.getSeconds());
      }
    }

    function load() {
      try { return JSON.parse(window.sessionStorage.getItem(LISTENING_KEY)); } catch (e) { return null; }
    }

    function save() {
      try {
        if (listening) { window.sessionStorage.setItem(LISTENING_KEY, JSON.stringify(listening)); }
        else { window.sessionStorage.removeItem(LISTENING_KEY); }
      } catch (e) { /* private mode: the banner lasts as long as the page */ }
    }

    function sectionFor(helpline) {
      if (!sections[helpline]) {
        var first = document.querySelector(".helpline");
        var section = first.cloneNode(true);
        section.dataset.helpline = helpline;
        section.className = "helpline line-other";
        var heading = section.querySelector("h2");
        heading.textContent = helpline;
        heading.id = "hl-other-" + Object.keys(sections).length;
        section.setAttribute("aria-labelledby", heading.id);
        section.querySelector(".pill").remove();
        section.querySelector("[data-calls]").textContent = "";
        first.parentNode.appendChild(section);
        sections[helpline] = section;
      }
      return sections[helpline];
    }

    function newCard(call) {
      var card = template.content.firstElementChild.cloneNode(true);
      card.dataset.id = call.id;
      var form = card.querySelector("[data-form]");
      var listen = card.querySelector("[data-listen]");
      var formId = "listen-" + call.id;
      form.id = formId;
      listen.setAttribute("aria-controls", formId);
      listen.setAttribute("aria-label", "Listen to this call (ref " + call.id + ")");
      /* Only the phone registered on the account is ever rung: the form names it, and
         cannot change it. */
      var hint = card.querySelector("[data-phone-hint]");
      var hintId = formId + "-hint";
      hint.id = hintId;
      card.querySelector("[data-submit]").setAttribute("aria-describedby", hintId);
      if (phoneSet) {
        hint.textContent = "Your registered phone (" + phoneLabel + ") will ring.";
      } else {
        hint.textContent = "No phone is registered on your account, so there is nothing to " +
          "ring: ask an admin to register yours.";
      }
      listen.addEventListener("click", function () { toggleForm(card, form.hidden); });
      card.querySelector("[data-cancel]").addEventListener("click", function () {
        toggleForm(card, false);
      });
      form.addEventListener("keydown", function (event) {
        if (event.key === "Escape") { toggleForm(card, false); }
      });
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        requestListen(card, form);
      });
      return card;
    }

    function toggleForm(card, open) {
      var form = card.querySelector("[data-form]");
      var listen = card.querySelector("[data-listen]");
      form.hidden = !open;
      listen.setAttribute("aria-expanded", open ? "true" : "false");
      card.classList.toggle("call-open", open);
      if (open) {
        showError(form, "");
        form.querySelector("input[name=purpose]").focus();
      } else {
        listen.focus();
      }
    }

    function showError(form, text) {
      var error = form.querySelector("[data-error]");
      error.textContent = text;
      error.hidden = !text;
    }

    function requestListen(card, form) {
      var chosen = form.querySelector("input[name=purpose]:checked");
      if (!chosen) {
        showError(form, "Choose why you are listening: quality or training.");
        form.querySelector("input[name=purpose]").focus();
        return;
      }
      var submit = form.querySelector("[data-submit]");
      submit.disabled = true;
      submit.textContent = "Ringing…";
      api(listenUrl.replace("CALL_ID", encodeURIComponent(card.dataset.id)),
          { method: "POST", body: { purpose: chosen.value } }).then(function (result) {
        submit.disabled = false;
        submit.textContent = "Ring my phone";
        if (result.status === 202) {
          var section = card.closest("[data-helpline]");
          listening = { session: result.data.session, call: card.dataset.id,
                        helpline: section ? section.dataset.helpline : "",
                        since: serverNow(), message: result.data.message };
          save();
          form.reset();
          form.hidden = true;
          card.querySelector("[data-listen]").setAttribute("aria-expanded", "false");
          card.classList.remove("call-open");
          showListening();
          stopButton.focus();
          render(lastCalls);
        } else {
          showError(form, (result.data && result.data.message) ||
                    "Listening was refused. Reload the page and try again.");
        }
      }).catch(function () {
        submit.disabled = false;
        submit.textContent = "Ring my phone";
        showError(form, "The service could not be reached; nothing was started. Try again.");
      });
    }

    function showListening() {
      if (!listening) {
        banner.hidden = true;
        return;
      }
      banner.hidden = false;
      banner.querySelector(".listening-where").textContent =
        listening.helpline ? "to a call on " + listening.helpline : "to a call";
      banner.querySelector(".listening-message").textContent = listening.message || "";
      tick();
    }

    function stopListening() {
      if (!listening) { return; }
      stopButton.disabled = true;
      api(stopUrl.replace("SESSION_ID", encodeURIComponent(listening.session)), { method: "POST" })
        .then(function (result) {
          stopButton.disabled = false;
          if (result.ok || result.status === 404) {
            var spent = spoken((serverNow() - listening.since) / 1000);
            listening = null;
            save();
            showListening();
            say((result.data.message || "You have stopped listening.") + " You listened for " + spent + ".");
            status.focus();
            render(lastCalls);
          } else {
            say(result.data.message || "Listening could not be stopped. Try again.");
          }
        }).catch(function () {
          stopButton.disabled = false;
          say("The service could not be reached. Try again, or hang up your phone.");
        });
    }

    function updateCard(card, call) {
      var connected = call.state === "connected";
      var stateText = { waiting: "Waiting", ringing: "Ringing workers", connected: "Connected" };
      var state = card.querySelector("[data-state]");
      state.textContent = stateText[call.state] || call.state;
      state.className = "state state-" + call.state;
      card.dataset.since = connected && call.connected_at ? call.connected_at : call.started_at;
      card.querySelector("[data-time-label]").textContent = connected ? "for" : "waiting";
      card.querySelector("[data-ref]").textContent = call.id;
      var flag = card.querySelector("[data-monitorable]");
      flag.textContent = call.monitorable ? "May be monitored" : "Not to be monitored";
      flag.className = "flag " + (call.monitorable ? "flag-ok" : "flag-no");
      card.querySelector("[data-monitored]").hidden = !call.being_monitored;
      var mine = listening && listening.call === call.id;
      card.classList.toggle("call-mine", !!mine);
      var canListen = isManager && connected && call.monitorable && !call.being_monitored &&
        !listening;
      card.querySelector("[data-actions]").hidden = !canListen;
      var form = card.querySelector("[data-form]");
      if (!canListen && !form.hidden && !form.querySelector("[data-error]").textContent) {
        form.hidden = true;
        card.classList.remove("call-open");
      }
    }

    function render(calls) {
      lastCalls = calls;
      var seen = {};
      var counts = {};
      calls.forEach(function (call) {
        seen[call.id] = true;
        var section = sectionFor(call.helpline);
        var list = section.querySelector("[data-calls]");
        var card = cards[call.id];
        if (!card) {
          card = cards[call.id] = newCard(call);
        }
        updateCard(card, call);
        if (card.parentNode !== list) { list.appendChild(card); }
        var c = counts[call.helpline] = counts[call.helpline] || { waiting: 0, connected: 0 };
        if (call.state === "connected") { c.connected += 1; } else { c.waiting += 1; }
      });
      Object.keys(cards).forEach(function (id) {
        if (!seen[id]) {
          var card = cards[id];
          var wasOpen = !card.querySelector("[data-form]").hidden;
          card.remove();
          delete cards[id];
          if (wasOpen) { say("The call you were about to listen to has ended."); }
        }
      });
      if (listening && !seen[listening.call]) {
        listening = null;
        save();
        showListening();
        say("The call has ended, so you are no longer listening.");
      }
      Object.keys(sections).forEach(function (name) {
        var section = sections[name];
        var c = counts[name];
        var count = section.querySelector("[data-count]");
        section.querySelector("[data-empty]").hidden = !!c;
        if (!c) {
          count.textContent = "No live calls";
        } else {
          var parts = [];
          if (c.connected) { parts.push(c.connected + " connected"); }
          if (c.waiting) { parts.push(c.waiting + " waiting"); }
          count.textContent = parts.join(", ");
        }
      });
      tick();
    }

    function tick() {
      var now = serverNow();
      Object.keys(cards).forEach(function (id) {
        var card = cards[id];
        var since = Date.parse(card.dataset.since);
        card.querySelector("[data-timer]").textContent = isNaN(since) ? "" : duration((now - since) / 1000);
      });
      if (listening) {
        banner.querySelector(".listening-timer").textContent = duration((now - listening.since) / 1000);
      }
    }

    function poll() {
      if (document.hidden) { window.setTimeout(poll, POLL_MS); return; }
      api(callsUrl, { poll: true }).then(function (result) {
        if (result.ok) {
          recovered();
          render(result.data.calls || []);
          updatePills(result.data.helplines);
          Object.keys(cards).forEach(function (id) { markStale(cards[id], false); });
          lastSeen = serverNow();
          updated.textContent = "Updated " + clockTime(lastSeen) + ".";
        } else if (result.status !== 401) {
          trouble((result.data.message || "The live calls could not be read.") +
                  " What is shown is from " + clockTime(lastSeen) + "; trying again.");
        }
      }).catch(function () {
        trouble("The service could not be reached. What is shown is from " +
                clockTime(lastSeen) + "; trying again.");
      }).then(function () {
        window.setTimeout(poll, POLL_MS * Math.min(1 + failures, 5));
      });
    }

    /* Polling is not activity; a key or a tap is, and keeps the session alive. */
    function activity() {
      if (Date.now() - lastActivity > KEEPALIVE_MS) {
        lastActivity = Date.now();
        api(sessionUrl);
      }
    }

    document.addEventListener("keydown", activity);
    document.addEventListener("pointerdown", activity);
    document.addEventListener("visibilitychange", function () { if (!document.hidden) { tick(); } });
    stopButton.addEventListener("click", stopListening);
    status.setAttribute("tabindex", "-1");
    showListening();
    window.setInterval(tick, 1000);
    poll();
  }

  /* --------------------------------------------------------------------- the audit page -- */

  function auditPage() {
    var button = document.getElementById("verify-again");
    var badge = document.getElementById("verify-badge");
    if (!button || !badge) { return; }
    button.addEventListener("click", function () {
      button.disabled = true;
      badge.querySelector(".badge-text").textContent = "Checking the chain…";
      api(body.dataset.verifyUrl).then(function (result) {
        button.disabled = false;
        var d = result.data || {};
        var text, ok = !!d.ok;
        if (!result.ok) {
          text = d.message || "The chain could not be checked.";
          ok = false;
        } else if (ok) {
          text = "Chain verified: all " + d.count + (d.count === 1 ? " entry" : " entries") + " intact";
        } else {
          text = "Chain broken" + (d.first_bad_seq !== null && d.first_bad_seq !== undefined ?
            " at entry " + d.first_bad_seq : "") + ": " + d.reason;
        }
        badge.className = "badge " + (ok ? "badge-ok" : "badge-bad");
        badge.querySelector(".badge-icon").textContent = ok ? "✓" : "!";
        badge.querySelector(".badge-text").textContent = text;
      }).catch(function () {
        button.disabled = false;
        badge.querySelector(".badge-text").textContent = "The chain could not be checked.";
      });
    });
  }

  /* ---------------------------------------------------------------- the exceptions page -- */

  function exceptionsPage() {
    var whyNot = document.querySelector("[data-why-not]");
    var no = document.querySelector("[data-not-informed]");
    if (!whyNot || !no) { return; }
    var radios = document.querySelectorAll("input[name=caller_informed]");
    var reasons = whyNot.querySelectorAll("input[name=why_not]");
    function update() {
      whyNot.hidden = !no.checked;
      Array.prototype.forEach.call(reasons, function (r) { r.required = no.checked; });
    }
    Array.prototype.forEach.call(radios, function (r) { r.addEventListener("change", update); });
    update();
  }

  var page = body.dataset.page;
  if (page === "live") { livePage(); }
  if (page === "audit") { auditPage(); }
  if (page === "exceptions") { exceptionsPage(); }
}());
