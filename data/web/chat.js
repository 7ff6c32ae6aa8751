// Chat page behaviour that Gradio has no option for: [n] opens and shows its citation
// card, and "copy" copies the answer text only (not the cards). Delegated, so it also
// works for messages rendered later.
document.addEventListener("click", function (event) {
  var ref = event.target.closest && event.target.closest("a.cqa-ref");
  if (ref) {
    var card = document.getElementById(ref.getAttribute("href").slice(1));
    if (card) {
      event.preventDefault();
      card.open = true;
      card.scrollIntoView({ block: "nearest", behavior: "smooth" });
    }
    return;
  }
  var copy = event.target.closest && event.target.closest("a.cqa-copy");
  if (copy) {
    event.preventDefault();
    var text = copy.closest(".cqa-answer").querySelector(".cqa-text").innerText;
    navigator.clipboard.writeText(text).then(function () {
      copy.textContent = "已复制 Copied";
      setTimeout(function () { copy.textContent = "复制 Copy"; }, 1500);
    });
  }
});
