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
    var source = new EventSource("/events");
    source.onopen = function () { setState("●", "live updates: connected"); };
    source.onmessage = function (event) {
      try { onSnapshot(JSON.parse(event.data)); } catch (e) { /* ignore a bad event */ }
    };
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) { startPolling(); }
      else { setState("○", "live updates: reconnecting"); }
    };
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
            if (out.finished) { clearInterval(timer); location.reload(); }
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
      setTimeout(function () { location.reload(); }, 1500);
    });
    source.onerror = function () {
      if (!ended && source.readyState === EventSource.CLOSED) { pollOutput(); }
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    connect();
    var pre = document.getElementById("live-output");
    if (pre) { followOutput(pre); }
  });
})();
