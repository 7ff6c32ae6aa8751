"""Build the off-topic bench ``data/questions/offtopic.jsonl``.

What it does
    Samples general-domain questions from the TRAINING files of the shared benchmark folder
    (``shared/bench``, see its README.md) and writes them as unanswerable questions
    (``kind: "offtopic"``, ``answerable: false``) for measuring how often ClusterQA refuses
    questions that its corpus (advanced-manufacturing clusters) does not answer:

    ===========================  =========  ======
    file                         script     sample
    ===========================  =========  ======
    cmrc2018_trial.json          zh-Hans    300
    xquad_part_a.zh.json         zh-Hans    120
    drcd_dev.json                zh-Hant    420
    squad_dev_part_a.json        en         300
    xquad_part_a.en.json         en         120
    ===========================  =========  ======

    ``cmrc2018_dev.json`` is evaluation-only and is never read. XQuAD en/zh hold the same
    questions (same ids) and XQuAD en repeats questions of ``squad_dev_part_a.json``; so the
    XQuAD ids are shuffled once and split in two halves (the zh sample is drawn from one half,
    the en sample from the other) and XQuAD ids are removed from the SQuAD pool: no question
    appears twice, not even as its own translation. Exact duplicates (after whitespace and case
    normalisation) are dropped too. Sampling is deterministic (``random.Random(SEED)`` over the
    files' own order).

Drop rule
    A question is dropped before sampling when it contains any topic term of the corpus
    (``TOPIC_TERMS_ZH`` / ``TOPIC_TERMS_EN`` below: clusters, manufacturing, semiconductors and
    chips, aviation, the countries, programmes, laws, places, companies and people the corpus
    reports on). Chinese terms are matched as substrings of the question and of its Simplified
    form (OpenCC t2s when ``opencc`` is installed; Taiwan spellings such as 半導體, 積體電路,
    人工智慧, 沙烏地 are listed explicitly, so the rule also works without it). English terms are
    case-insensitive regular expressions anchored at a word start (``\\bindia\\b`` does not drop
    "Indian", ``\\bowl\\b`` does not drop "bowl"). The rule errs on the side of dropping: a
    dropped general question costs nothing, a kept question the corpus answers would be a
    wrong label. Counts of dropped questions per term (first matching term) are printed.

Run
    python -m eval.build_offtopic            # or: python eval/build_offtopic.py
    options: --bench DIR (default: $CLUSTERQA_SHARED_BENCH, else <repo>/../shared/bench),
             --out FILE, --show N (print N dropped and N kept questions for inspection)

Stdlib only; ``opencc`` is used when available.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import Counter
from pathlib import Path

SEED = 20261206
REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "data" / "questions" / "offtopic.jsonl"

# (file, language, how many to sample)
SOURCES = [
    ("cmrc2018_trial.json", "zh-Hans", 300),
    ("xquad_part_a.zh.json", "zh-Hans", 120),
    ("drcd_dev.json", "zh-Hant", 420),
    ("squad_dev_part_a.json", "en", 300),
    ("xquad_part_a.en.json", "en", 120),
]
EVALUATION_ONLY = {"cmrc2018_dev.json"}

# Topic terms of the corpus (data/corpus/seed + related). Simplified forms, plus the Traditional /
# Taiwan forms that OpenCC t2s would not map onto them.
TOPIC_TERMS_ZH = [
    # clusters, manufacturing, industry policy
    "集群", "集羣", "产业集聚", "制造", "製造", "产业园", "產業園", "工业园", "工業園", "产业链", "產業鏈", "供应链", "供應鏈",
    "工业4.0", "工業4.0", "工业 4.0", "先进制造", "尖端产业", "尖端技術", "专精特新", "專精特新", "单项冠军", "小巨人",
    "中小企业", "中小企業", "工业和信息化部", "工業和信息化部", "工业和资讯化部", "工信部", "工业文化", "经济部工业局",
    "创新中心", "創新中心", "科技中心", "技术中心", "技術中心", "区域创新", "創新谷", "创新谷", "促进组织", "集群政策",
    # semiconductors, chips, AI, energy transition
    "半导体", "半導體", "芯片", "晶片", "晶圆", "晶圓", "集成电路", "集成電路", "积体电路", "積體電路",
    "人工智能", "人工智慧", "清洁能源", "潔淨能源", "清潔能源", "净零", "淨零", "零碳", "低碳", "碳中和", "碳达峰",
    "绿色协议", "綠色協議", "绿色新政", "綠色新政", "氢", "氫", "锂电池", "鋰電池", "蓄电池", "蓄電池", "电动汽车",
    "電動汽車", "電動車", "新能源", "太阳能板", "太陽能板", "风力涡轮", "風力渦輪", "热泵", "熱泵", "无人机", "無人機",
    "生物制造", "生物製造", "生物医药", "生物醫藥", "生物科技", "新材料", "新一代信息技术", "智能网联", "数字化转型",
    "數位轉型", "数字化轉型",
    # aviation
    "航空", "飞机", "飛機", "空客", "空中客车", "空中巴士", "汉莎", "漢莎", "汉堡", "漢堡", "图卢兹", "圖盧茲", "土魯斯",
    # countries, regions and places the corpus reports on
    "韩国", "韓國", "南韓", "韩元", "韓元", "龙仁", "龍仁", "京畿", "尹锡悦", "尹錫悅", "三星", "沙特", "沙烏地",
    "沙地阿拉伯", "新加坡", "欧盟", "歐盟", "欧洲联盟", "歐洲聯盟", "欧盟委员会", "歐盟執委會", "欧洲集群", "歐洲集群",
    "墨西哥", "印度", "近岸外包", "长沙", "長沙", "成德绵", "成德綿", "长三角", "長三角", "珠三角", "京津冀", "成渝",
    "佛罗里达", "佛羅里達", "内华达", "內華達", "南卡罗来纳", "南卡羅來納", "伊利诺伊", "伊利諾", "印第安纳", "印第安納",
    "俄克拉荷马", "奧克拉荷馬", "塔尔萨", "塔爾薩",
    # laws, programmes, people
    "芯片与科学法案", "晶片與科學法案", "降低通胀法案", "通膨削減法案", "净零工业法案", "关键原材料", "關鍵原材料",
    "拜登", "雷蒙多", "冯德莱恩", "馮德萊恩", "谢夫乔维奇", "商务部长", "商務部長",
]

TOPIC_TERMS_EN = [
    r"cluster", r"manufactur", r"industr(y|ial) 4\.0", r"industrial (park|polic|ecosystem)", r"supply chains?\b",
    r"semiconductor", r"chips?\b", r"microchip", r"integrated circuit", r"wafer",
    r"artificial intelligence", r"ai\b", r"clean energy", r"net[- ]zero", r"carbon[- ]neutral", r"low[- ]carbon",
    r"green deal", r"hydrogen", r"lithium", r"batter(y|ies)\b", r"electric (vehicle|car)s?", r"solar panels?",
    r"wind turbines?", r"heat pumps?", r"drones?\b", r"autonomous system", r"biomanufactur", r"biotech",
    r"aviation", r"aircraft", r"aerospace", r"aeronaut", r"airbus", r"a380\b", r"lufthansa", r"hamburg", r"toulouse",
    r"miele", r"owl\b", r"paderborn", r"ostwestfalen", r"east westphalia", r"lippe\b", r"leading[- ]edge",
    r"korea", r"yongin", r"gyeonggi", r"samsung", r"yoon suk", r"saudi", r"singapore", r"european union", r"eu\b",
    r"european commission", r"von der leyen", r"mexic", r"india\b", r"nearshor", r"changsha",
    r"yangtze river delta", r"pearl river delta",
    r"chips and science", r"chips act", r"inflation reduction act", r"biden", r"raimondo", r"commerce secretary",
    r"tech(nology)? hubs?", r"innovation (hub|cent(er|re)|valley)", r"smes?\b", r"small and medium",
    r"miit\b", r"ministry of industry and information", r"tulsa", r"nevada", r"south carolina", r"florida",
    r"illinois", r"indiana\b", r"oklahoma", r"sileo", r"eccp\b",
]
_EN_PATTERNS = [(t, re.compile(r"\b" + t, re.IGNORECASE)) for t in TOPIC_TERMS_EN]


def _t2s():
    try:
        import opencc  # type: ignore

        return opencc.OpenCC("t2s").convert
    except Exception:  # noqa: BLE001 - optional dependency
        return None


def bench_dir(arg: str | None) -> Path:
    """--bench when given, else the one shared lookup (eval/shared_bench.py)."""
    if arg:
        return Path(arg)
    if str(REPO) not in sys.path:  # run as a script: the repo's packages are not on the path
        sys.path.insert(0, str(REPO))
    from eval.shared_bench import bench_dir as shared_bench_dir

    return shared_bench_dir()


def read_questions(path: Path) -> list[tuple[str, str]]:
    """(question id, question text) in file order."""
    data = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for article in data["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                text = " ".join(str(qa.get("question", "")).split())
                if text:
                    out.append((str(qa["id"]), text))
    return out


def topic_term(question: str, to_simplified) -> str | None:
    """The first corpus topic term the question contains, or None."""
    forms = {question}
    if to_simplified is not None:
        forms.add(to_simplified(question))
    for term in TOPIC_TERMS_ZH:
        if any(term in f for f in forms):
            return term
    for term, pattern in _EN_PATTERNS:
        if pattern.search(question):
            return term
    return None


def build(bench: Path, out: Path, show: int = 0) -> list[dict]:
    for name, _, _ in SOURCES:
        if name in EVALUATION_ONLY:
            raise SystemExit(f"{name} is evaluation-only")
    to_simplified = _t2s()
    if to_simplified is None:
        print("note: opencc not installed; Traditional questions are matched by the listed variants only",
              file=sys.stderr)
    rng = random.Random(SEED)

    files = {name: read_questions(bench / name) for name, _, _ in SOURCES}
    # XQuAD en/zh share ids (translations) and repeat SQuAD questions: split XQuAD ids in two halves.
    xquad_ids = sorted({qid for qid, _ in files["xquad_part_a.en.json"]})
    rng.shuffle(xquad_ids)
    half = len(xquad_ids) // 2
    allowed = {
        "xquad_part_a.zh.json": set(xquad_ids[:half]),
        "xquad_part_a.en.json": set(xquad_ids[half:]),
    }
    excluded = {"squad_dev_part_a.json": set(xquad_ids)}

    dropped_by_term: Counter = Counter()
    dropped_by_source: Counter = Counter()
    dropped_examples: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    records: list[dict] = []
    for name, language, n in SOURCES:
        pool = []
        for qid, text in files[name]:
            if name in allowed and qid not in allowed[name]:
                continue
            if qid in excluded.get(name, ()):
                continue
            key = text.casefold()
            if key in seen:
                continue
            seen.add(key)
            term = topic_term(text, to_simplified)
            if term is not None:
                dropped_by_term[term] += 1
                dropped_by_source[name] += 1
                dropped_examples.append((name, term, text))
                continue
            pool.append(text)
        if len(pool) < n:
            raise SystemExit(f"{name}: only {len(pool)} questions left after the drop rule, need {n}")
        sample = rng.sample(pool, n)
        print(f"{name:24s} {language:8s} pool {len(pool):5d}  dropped {dropped_by_source[name]:4d}  sampled {n}")
        for text in sample:
            records.append({"question": text, "language": language, "kind": "offtopic",
                            "answerable": False, "source": name})

    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for i, rec in enumerate(records, 1):
            f.write(json.dumps({"id": f"off-{i:04d}", **rec}, ensure_ascii=False) + "\n")

    print(f"wrote {len(records)} questions to {out}")
    print(f"dropped {sum(dropped_by_term.values())} questions by topic term (first matching term):")
    for term, count in dropped_by_term.most_common():
        print(f"  {count:4d}  {term}")
    if show:
        pick = random.Random(SEED + 1)
        print(f"\n--- {show} dropped (term | source | question)")
        for name, term, text in pick.sample(dropped_examples, min(show, len(dropped_examples))):
            print(f"  {term} | {name} | {text}")
        print(f"\n--- {show} kept")
        for rec in pick.sample(records, min(show, len(records))):
            print(f"  {rec['source']} | {rec['question']}")
    return records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", help="shared bench folder (default: $CLUSTERQA_SHARED_BENCH or ../shared/bench)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="output JSONL")
    ap.add_argument("--show", type=int, default=0, help="print N dropped and N kept questions")
    args = ap.parse_args(argv)
    build(bench_dir(args.bench), Path(args.out), args.show)
    return 0


if __name__ == "__main__":
    sys.exit(main())
