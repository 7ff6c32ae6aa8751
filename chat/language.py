"""The asker's language and script, and everything we say to them in it.

Detection is by counting, not by a model: Han characters against Latin words decide
Chinese vs English (a mixed question takes the language of its frame, e.g. "What is
集群?" is English, "韩国 semiconductor 投资多少?" is Chinese); among Chinese questions,
characters that exist only in Traditional against those only in Simplified decide the script
(ingest.script.detect_script, the rule the corpus was normalised with).
"""

from __future__ import annotations

import re

HANS, HANT, EN = "zh-Hans", "zh-Hant", "en"

HAN_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
LATIN_WORD_RE = re.compile(r"[A-Za-z]+")
EN_QUESTION_START = re.compile(
    r"^\s*(what|which|who|whom|whose|when|where|why|how|is|are|was|were|do|does|did|can|could|"
    r"will|would|should|has|have|had|tell|list|name|give|and|but|so|in|on|according)\b", re.I)
ZH_QUESTION_WORDS = re.compile(r"什么|什麼|多少|哪|几|幾|谁|誰|如何|怎么|怎麼|为何|為何|为什么|為什麼|吗|嗎|呢|是否")


def detect_language(text: str) -> str:
    """'zh-Hans', 'zh-Hant' or 'en' for a question (or any short text)."""
    han = HAN_RE.findall(text)
    words = LATIN_WORD_RE.findall(text)
    if not han:
        return EN
    if words:
        # A Chinese question may name English terms (it's OWL, AI); an English one may quote
        # Chinese names. Chinese question words decide for Chinese; otherwise an English
        # opening ("What is ...") or a majority of English words decides for English.
        if not ZH_QUESTION_WORDS.search(text):
            english_frame = bool(EN_QUESTION_START.match(text)) and len(words) >= 2
            if english_frame or len(words) > len(han):
                return EN
    return detect_chinese_script("".join(han))


def detect_chinese_script(text: str) -> str:
    """zh-Hans or zh-Hant for Chinese text (the ingest rule: Traditional-only characters win)."""
    from ingest.script import detect_script

    return HANT if detect_script(text) == HANT else HANS


def render(text: str, language: str) -> str:
    """Text in the asker's script: Traditional for zh-Hant askers, unchanged otherwise."""
    if language != HANT or not text:
        return text
    from ingest.script import to_traditional

    return to_traditional(text)


def is_chinese_text(text: str) -> bool:
    han = len(HAN_RE.findall(text))
    return han > 0 and han >= len(LATIN_WORD_RE.findall(text))


# Everything the user reads that is not quoted from a document, in each language/script.
_MESSAGES = {
    "opening": {
        HANS: "根据文档：",
        HANT: "根據文件：",
        EN: "According to the documents:",
    },
    "opening_quoted_zh": {
        # English asker, Chinese evidence: no offline translator exists, so we quote and say so.
        EN: "According to the documents (quoted from the Chinese source, untranslated):",
    },
    "opening_quoted_en": {
        # Chinese asker, English evidence: quoted as written.
        HANS: "根据文档（引自英文原文，未翻译）：",
        HANT: "根據文件（引自英文原文，未翻譯）：",
    },
    # evidence in both languages: only the other language's sentences are untranslated quotes
    "opening_mixed_zh": {
        EN: "According to the documents (the Chinese passages are quoted untranslated):",
    },
    "opening_mixed_en": {
        HANS: "根据文档（其中英文段落引自原文，未翻译）：",
        HANT: "根據文件（其中英文段落引自原文，未翻譯）：",
    },
    # the reader's short answer (its span) opens the answer, before the sentences around it
    "short_answer": {HANS: "答：", HANT: "答：", EN: "Answer:"},
    "short_answer_quoted_zh": {EN: "Answer (quoted from the Chinese source, untranslated):"},
    "short_answer_quoted_en": {HANS: "答（引自英文原文，未翻译）：", HANT: "答（引自英文原文，未翻譯）："},
    "list_count": {HANS: "共{k}项：", HANT: "共{k}項：", EN: "{k} items:"},
    "metadata_date": {
        HANS: "《{title}》的发布日期是{value}。",
        HANT: "《{title}》的發布日期是{value}。",
        EN: "“{title}” was published on {value}.",
    },
    "metadata_publisher": {
        HANS: "《{title}》的发布者/来源是{value}。",
        HANT: "《{title}》的發布者/來源是{value}。",
        EN: "“{title}” was published by (source): {value}.",
    },
    "metadata_source": {
        HANS: "《{title}》的来源网址是 {value}",
        HANT: "《{title}》的來源網址是 {value}",
        EN: "The source of “{title}” is {value}",
    },
    "metadata_title": {
        HANS: "这篇文档的标题是《{title}》。",
        HANT: "這篇文件的標題是《{title}》。",
        EN: "The document's title is “{title}”.",
    },
    "chitchat": {
        HANS: "你好！我是 ClusterQA，只回答关于所收录文档（全球先进制造业集群发展趋势及相关报道）的问题，并给出引用。"
              "例如：“报告提炼了哪五大关键词？”",
        HANT: "你好！我是 ClusterQA，只回答關於所收錄文件（全球先進製造業集群發展趨勢及相關報導）的問題，並給出引用。"
              "例如：「報告提煉了哪五大關鍵詞？」",
        EN: "Hello! I am ClusterQA: I answer questions about the indexed documents (global advanced-manufacturing "
            "cluster trends and related reports), with citations. For example: “What are the five keywords of the report?”",
    },
    # why a question was refused (chat/refusal.py), after the not_found message
    "why_low_answerability": {
        HANS: "最接近的段落都不足以回答这个问题。",
        HANT: "最接近的段落都不足以回答這個問題。",
        EN: "None of the closest passages answers it.",
    },
    "why_no_support": {
        HANS: "没有段落包含问题中的关键词。",
        HANT: "沒有段落包含問題中的關鍵詞。",
        EN: "No passage holds the question's key terms.",
    },
    "why_off_topic": {
        HANS: "文档中没有与这个问题相关的内容。",
        HANT: "文件中沒有與這個問題相關的內容。",
        EN: "Nothing in the documents is about this question.",
    },
    "why_wrong_type": {
        HANS: "最接近的段落没有给出所问类型的答案（例如问的是金额，段落里只有数量）。",
        HANT: "最接近的段落沒有給出所問類型的答案（例如問的是金額，段落裡只有數量）。",
        EN: "The closest passages give no value of the kind asked (e.g. an amount of money where only a count is given).",
    },
    "conflict_intro": {
        HANS: "不同文档给出的数字不一致：",
        HANT: "不同文件給出的數字不一致：",
        EN: "The documents give different values:",
    },
    "conflict_source": {
        HANS: "《{title}》称{value}：{quote}[{n}]",
        HANT: "《{title}》稱{value}：{quote}[{n}]",
        EN: "“{title}” gives {value}: {quote} [{n}]",
    },
    "overview_intro": {
        HANS: "《{title}》的主要内容：",
        HANT: "《{title}》的主要內容：",
        EN: "The main points of “{title}” (quoted from the source, untranslated where it is Chinese):",
    },
    "topic_intro": {
        HANS: "各文档关于“{topic}”的说法：",
        HANT: "各文件關於「{topic}」的說法：",
        EN: "What the documents say about “{topic}” (Chinese passages quoted untranslated):",
    },
    "compare_intro": {
        HANS: "分别来看：",
        HANT: "分別來看：",
        EN: "One by one (Chinese passages quoted untranslated):",
    },
    "compare_missing": {
        HANS: "{entity}：文档中没有找到。",
        HANT: "{entity}：文件中沒有找到。",
        EN: "{entity}: not found in the documents.",
    },
    "compare_line": {
        HANS: "{entity}：{text}[{n}]",
        HANT: "{entity}：{text}[{n}]",
        EN: "{entity}: {text} [{n}]",
    },
    "not_found": {
        HANS: "抱歉，文档中没有找到这个问题的答案。下面列出的是最接近的段落，仅供参考。",
        HANT: "抱歉，文件中沒有找到這個問題的答案。下面列出的是最接近的段落，僅供參考。",
        EN: "Sorry, I could not find the answer to this question in the documents. "
            "The nearest passages are listed for reference.",
    },
    "empty": {
        HANS: "问题为空，请输入一个问题。",
        HANT: "問題為空，請輸入一個問題。",
        EN: "The question is empty. Please type a question.",
    },
    "too_long": {
        HANS: "问题太长（{n} 个字符），上限为 {limit} 个字符。问题未被截断，也未被处理，请缩短后再问。",
        HANT: "問題太長（{n} 個字元），上限為 {limit} 個字元。問題未被截斷，也未被處理，請縮短後再問。",
        EN: "The question is too long ({n} characters; the limit is {limit}). "
            "It was refused, not truncated: please shorten it.",
    },
    "no_words": {
        HANS: "问题中没有文字（只有表情符号或标点），请用文字提问。",
        HANT: "問題中沒有文字（只有表情符號或標點），請用文字提問。",
        EN: "The question has no words in it (only emoji or punctuation). Please ask in words.",
    },
    "bad_history": {
        HANS: "对话历史格式不正确：{detail}",
        HANT: "對話歷史格式不正確：{detail}",
        EN: "The conversation history is malformed: {detail}",
    },
    "bad_type": {
        HANS: "问题必须是文本。",
        HANT: "問題必須是文字。",
        EN: "The question must be text.",
    },
    "bad_top_k": {
        HANS: "top_k 必须是 1 到 {limit} 之间的整数。",
        HANT: "top_k 必須是 1 到 {limit} 之間的整數。",
        EN: "top_k must be a whole number between 1 and {limit}.",
    },
    "llm_fallback": {
        HANS: "生成式模型不可用（{reason}），以下为摘录式回答。",
        HANT: "生成式模型無法使用（{reason}），以下為摘錄式回答。",
        EN: "The generative model was unavailable ({reason}); this is the extractive answer.",
    },
    "llm_unsupported": {
        HANS: "生成的回答没有引用任何文档段落，无法核实，因此未采用。",
        HANT: "生成的回答沒有引用任何文件段落，無法核實，因此未採用。",
        EN: "The generated answer cited none of the passages, so it could not be verified and was not used.",
    },
    "llm_dropped_markers": {
        HANS: "已删除 {k} 个指向不存在段落的引用标记。",
        HANT: "已刪除 {k} 個指向不存在段落的引用標記。",
        EN: "Removed {k} citation marker(s) that pointed at no passage.",
    },
}


def message(key: str, language: str, **fields) -> str:
    """A user-facing message in the asker's language and script."""
    table = _MESSAGES[key]
    text = table.get(language) or table.get(EN) or table[HANS]
    return text.format(**fields)


def bilingual(key: str, **fields) -> str:
    """For messages whose language cannot be told (empty question, emoji only)."""
    return f"{message(key, HANS, **fields)} / {message(key, EN, **fields)}"
