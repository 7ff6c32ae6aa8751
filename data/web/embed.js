// The /embed chat: calls POST api/ask/stream and renders with DOM APIs only
// (textContent, never innerHTML), so document text can never become markup.
(function () {
  "use strict";
  var base = document.querySelector('meta[name="cqa-base"]').content;
  var token = document.querySelector('meta[name="cqa-token"]').content;
  var log = document.getElementById("cqa-log");
  var form = document.getElementById("cqa-form");
  var box = document.getElementById("cqa-q");
  var send = document.getElementById("cqa-send");
  var history = [];
  var turn = 0;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function scroll() { log.scrollTop = log.scrollHeight; }

  // The answer span (docs/CONTRACTS.md): offsets into citations[n-1].text; may be absent.
  function spanRange(c, span) {
    if (!span || span.citation !== c.n) return null;
    if (typeof span.start === "number" && typeof span.end === "number" &&
        span.start >= 0 && span.start < span.end && span.end <= c.text.length) return [span.start, span.end];
    var pos = span.text ? c.text.indexOf(span.text) : -1;
    return pos >= 0 ? [pos, pos + span.text.length] : null;
  }

  function quoteRange(c) {
    var pos = c.quote ? c.text.indexOf(c.quote) : -1;
    return pos >= 0 ? [pos, pos + c.quote.length] : null;
  }

  function docLink(c, language, span) {
    var q = "?script=" + encodeURIComponent(language) + "&start=" + c.start + "&end=" + c.end;
    var qr = quoteRange(c), sr = spanRange(c, span);
    if (qr) q += "&qs=" + qr[0] + "&qe=" + qr[1];
    if (sr) q += "&ss=" + sr[0] + "&se=" + sr[1];
    return base + "doc/" + c.doc_id.split("/").map(encodeURIComponent).join("/") + q + "#passage";
  }

  // The passage as text nodes, the quote in <mark>, the span in <mark class="cqa-span"> nested inside.
  function markPassage(p, text, qr, sr) {
    var cuts = [0, text.length].concat(qr || [], sr || []).sort(function (a, b) { return a - b; });
    var quoteEl = null, spanEl = null;
    for (var i = 0; i + 1 < cuts.length; i++) {
      var a = cuts[i], b = cuts[i + 1];
      if (a === b) continue;
      var inQ = !!(qr && qr[0] <= a && a < qr[1]), inS = !!(sr && sr[0] <= a && a < sr[1]);
      if (!inQ) quoteEl = null;
      if (inQ && !quoteEl) { quoteEl = el("mark"); p.appendChild(quoteEl); }
      var parent = quoteEl || p;
      if (inS) {
        if (!spanEl || spanEl.parentNode !== parent) { spanEl = el("mark", "cqa-span"); parent.appendChild(spanEl); }
        spanEl.appendChild(document.createTextNode(text.slice(a, b)));
      } else {
        spanEl = null;
        parent.appendChild(document.createTextNode(text.slice(a, b)));
      }
    }
  }

  function card(c, t, language, span) {
    var d = el("details");
    d.id = "c-" + t + "-" + c.n;
    var s = el("summary");
    s.appendChild(el("b", "", "[" + c.n + "] "));
    s.appendChild(document.createTextNode(c.title + (c.date ? " · " + c.date : "")));
    d.appendChild(s);
    var src = el("div", "src");
    if (/^https?:\/\//i.test(c.source)) {
      var a = el("a", "", c.source);
      a.href = c.source; a.target = "_blank"; a.rel = "noopener noreferrer";
      src.appendChild(a);
    } else {
      src.appendChild(document.createTextNode(c.source));
    }
    src.appendChild(document.createTextNode(" · "));
    var full = el("a", "", "全文 Full document ↗");
    full.href = docLink(c, language, span); full.target = "_blank"; full.rel = "noopener";
    src.appendChild(full);
    d.appendChild(src);
    var p = el("div", "passage");
    markPassage(p, c.text, quoteRange(c), spanRange(c, span));
    d.appendChild(p);
    return d;
  }

  function renderAnswer(bubble, a, t) {
    bubble.textContent = "";
    if (a.note) bubble.appendChild(el("div", "note", a.note));
    var cited = {};
    a.citations.forEach(function (c) { cited[c.n] = true; });
    a.answer.split(/(\[\d+\])/).forEach(function (part) {
      var m = /^\[(\d+)\]$/.exec(part);
      if (m && cited[m[1]]) {
        var link = el("a", "ref", part);
        link.href = "#c-" + t + "-" + m[1];
        link.addEventListener("click", function (e) {
          e.preventDefault();
          var target = document.getElementById("c-" + t + "-" + m[1]);
          target.open = true;
          target.scrollIntoView({ block: "nearest" });
        });
        bubble.appendChild(link);
      } else {
        bubble.appendChild(document.createTextNode(part));
      }
    });
    a.citations.forEach(function (c) { bubble.appendChild(card(c, t, a.language, a.span)); });
  }

  async function ask(question) {
    var t = ++turn;
    log.appendChild(el("div", "msg user", question));
    var bubble = el("div", "msg bot", "…");
    log.appendChild(bubble);
    scroll();
    var text = "";
    var answer = null;
    try {
      var resp = await fetch(base + "api/ask/stream", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-Embed-Token": token },
        body: JSON.stringify({ question: question, history: history.slice(-8) }),  // recent turns: bodies stay small
      });
      if (!resp.ok) {
        var body = await resp.json().catch(function () { return {}; });
        throw new Error(body.error || "HTTP " + resp.status);
      }
      var reader = resp.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      for (;;) {
        var chunk = await reader.read();
        if (chunk.done) break;
        buffer += decoder.decode(chunk.value, { stream: true });
        var blocks = buffer.split("\n\n");
        buffer = blocks.pop();
        blocks.forEach(function (block) {
          var data = block.split("\n").filter(function (l) { return l.indexOf("data: ") === 0; })
            .map(function (l) { return l.slice(6); }).join("\n");
          if (!data) return;
          var ev = JSON.parse(data);
          if (ev.type === "token") { text += ev.text; bubble.textContent = text; }
          else if (ev.type === "status" && !text) { bubble.textContent = ev.text; }
          else if (ev.type === "answer") { answer = ev.answer; }
          else if (ev.type === "error") { throw new Error(ev.error); }
        });
        scroll();
      }
      if (!answer) throw new Error("no answer");
      renderAnswer(bubble, answer, t);
      history.push({ role: "user", content: question }, { role: "assistant", content: answer.answer });
    } catch (err) {
      bubble.className = "msg bot note";
      bubble.textContent = err.message;
    }
    scroll();
  }

  form.addEventListener("submit", async function (e) {
    e.preventDefault();
    var q = box.value.trim();
    if (!q) return;
    box.value = "";
    send.disabled = true;
    try { await ask(q); } finally { send.disabled = false; box.focus(); }
  });
  box.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
  });
  document.getElementById("cqa-new").addEventListener("click", function () {
    history = [];
    log.textContent = "";
  });
})();
