// queuectl dashboard: live fragments and live output. Our own code, no framework.
// Everything inserted comes from the server already escaped (fragments) or is
// inserted as text (output, numbers): never as HTML built here.
(function () {
  "use strict";
  var lastGeneration = null;
  var polling = null;
  var liveState = document.getElementById("live-state");

  function setState(text, title) {
    if (liveState) { liveState.textContent = text; liveState.title = title; }
  }

  function refresh() {
    var regions = document.querySelectorAll("[data-live]");
    if (!regions.length) { return; }
    fetch(location.pathname + location.search, {
      headers: { "X-Queuectl-Fragment": "1" },
      credentials: "same-origin",
      cache: "no-store"
    }).then(function (r) {
      return r.ok ? r.text() : null;
    }).then(function (html) {
      if (html === null) { return; }
      for (var i = 0; i < regions.length; i++) { regions[i].innerHTML = html; }
    }).catch(function () {});
  }

  function showError(message) {
    var el = document.getElementById("store-error");
    if (!el) { return; }
    el.hidden = !message;
    el.textContent = message ? "Error: " + message + " (retrying)" : "";
  }

  function onSnapshot(data) {
    showError(data.error);
    if (data.jobs) {
      Object.keys(data.jobs).forEach(function (state) {
        var els = document.querySelectorAll('[data-count="' + state + '"]');
        for (var i = 0; i < els.length; i++) { els[i].textContent = String(data.jobs[state]); }
      });
    }
    if (lastGeneration !== null && data.generation !== lastGeneration) { refresh(); }
    lastGeneration = data.generation;
  }

  function startPolling() {
    if (polling) { return; }
    setState("◐", "live updates: polling every 2 s");
    polling = setInterval(refresh, 2000);
  }

  function connect() {
    if (!window.EventSource) { startPolling(); return; }
    var watch = document.body.getAttribute("data-watch");
    var source = new EventSource("/events" + (watch ? "?watch=" + encodeURIComponent(watch) : ""));
    source.onopen = function () { setState("●", "live updates: connected"); };
    source.onmessage = function (event) {
      try { onSnapshot(JSON.parse(event.data)); } catch (e) { /* ignore a bad event */ }
    };
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) { startPolling(); }
      else { setState("○", "live updates: reconnecting"); }
    };
  }

  // A page's main part again, from the server (already escaped there), without a
  // reload: used when a running attempt ends, so the finished attempt shows.
  function reloadMain() {
    fetch(location.pathname + location.search, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("main");
        var main = document.querySelector("main");
        if (!fresh || !main) { return; }
        var message = document.getElementById("action-message");
        fresh = document.importNode(fresh, true);
        if (message) { fresh.insertBefore(message, fresh.firstChild); }
        main.replaceWith(fresh);
        var pre = document.getElementById("live-output");
        if (pre) { followOutput(pre); }
      }).catch(function () {});
  }

  function say(message, isError) {
    var main = document.querySelector("main");
    var el = document.getElementById("action-message");
    if (!main) { return; }
    if (!el) {
      el = document.createElement("p");
      el.id = "action-message";
      el.setAttribute("role", "status");
      main.insertBefore(el, main.firstChild);
    }
    el.className = "flash" + (isError ? " error" : "");
    el.textContent = message;
  }

  // An action button answers in place: the form is sent as a script would send it
  // (JSON back), its message shown, the live part fetched again. A form that leads
  // elsewhere afterwards (rm from a job's page) is left to the browser.
  function onSubmit(event) {
    var form = event.target;
    if (!form || form.method !== "post" || !window.fetch) { return; }
    var action = form.getAttribute("action") || "";
    if (action.indexOf("/actions/") !== 0) { return; }
    var next = form.elements.next ? form.elements.next.value : "";
    if (next && next !== location.pathname + location.search) { return; }
    event.preventDefault();
    var buttons = form.querySelectorAll("button");
    for (var i = 0; i < buttons.length; i++) { buttons[i].disabled = true; }
    fetch(action, {
      method: "POST",
      body: new URLSearchParams(new FormData(form)),
      headers: { "Accept": "application/json" },
      credentials: "same-origin"
    }).then(function (r) {
      return r.json().catch(function () { return { error: "HTTP " + r.status }; });
    }).then(function (answer) {
      if (answer.error) { say("Error: " + answer.error, true); } else { say(answer.message, false); }
      refresh();
    }).catch(function () {
      say("Error: the dashboard could not be reached; nothing was sent", true);
    }).then(function () {
      for (var i = 0; i < buttons.length; i++) { buttons[i].disabled = false; }
    });
  }

  function followOutput(pre) {
    var notice = document.getElementById("output-notice");
    function say(text) { if (notice) { notice.hidden = false; notice.textContent = text; } }
    function pollOutput() {
      var timer = setInterval(function () {
        fetch(pre.getAttribute("data-poll"), { credentials: "same-origin", cache: "no-store" })
          .then(function (r) { return r.ok ? r.json() : null; })
          .then(function (out) {
            if (!out) { return; }
            pre.textContent = out.output;
            if (out.finished) { clearInterval(timer); reloadMain(); }
          }).catch(function () {});
      }, 2000);
    }
    if (!window.EventSource) { pollOutput(); return; }
    var source = new EventSource(pre.getAttribute("data-stream"));
    var ended = false;
    source.onmessage = function (event) {
      pre.appendChild(document.createTextNode(JSON.parse(event.data)));
      pre.scrollTop = pre.scrollHeight;
    };
    source.addEventListener("notice", function (event) { say(JSON.parse(event.data)); });
    source.addEventListener("end", function () {
      ended = true;
      source.close();
      pre.setAttribute("data-ended", "1");
      setTimeout(reloadMain, 500);
    });
    source.onerror = function () {
      if (!ended && source.readyState === EventSource.CLOSED) { pollOutput(); }
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    connect();
    document.addEventListener("submit", onSubmit);
    var pre = document.getElementById("live-output");
    if (pre) { followOutput(pre); }
  });
})();
