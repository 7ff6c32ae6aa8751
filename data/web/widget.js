// ClusterQA widget: <script src="https://qa.example/widget.js" defer></script> adds a
// floating button that opens the chat (/embed, served next to this file) in a panel.
(function () {
  "use strict";
  var me = document.currentScript;
  if (!me || document.getElementById("cqa-widget-button")) return;
  var base = me.src.replace(/widget\.js([?#].*)?$/, "");

  var button = document.createElement("button");
  button.id = "cqa-widget-button";
  button.type = "button";
  button.textContent = "问答 Q&A";
  button.setAttribute("aria-label", "ClusterQA chat");
  button.setAttribute("aria-expanded", "false");
  button.style.cssText = "position:fixed;right:20px;bottom:20px;z-index:2147483646;border:0;" +
    "border-radius:24px;padding:12px 18px;background:#1d4ed8;color:#fff;font:600 15px system-ui,sans-serif;" +
    "box-shadow:0 4px 14px rgba(0,0,0,.25);cursor:pointer";

  var panel = document.createElement("div");
  panel.id = "cqa-widget-panel";
  panel.style.cssText = "position:fixed;right:20px;bottom:76px;z-index:2147483647;width:380px;height:600px;" +
    "max-width:calc(100vw - 24px);max-height:calc(100vh - 96px);border-radius:10px;overflow:hidden;" +
    "box-shadow:0 8px 30px rgba(0,0,0,.3);background:#fff;display:none";

  button.addEventListener("click", function () {
    if (!panel.firstChild) {  // load the chat only when first opened
      var frame = document.createElement("iframe");
      frame.src = base + "embed";
      frame.title = "ClusterQA";
      frame.style.cssText = "border:0;width:100%;height:100%";
      panel.appendChild(frame);
    }
    var open = panel.style.display === "none";
    panel.style.display = open ? "block" : "none";
    button.setAttribute("aria-expanded", String(open));
  });

  function mount() { document.body.appendChild(panel); document.body.appendChild(button); }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
