"""Build bench/data/english_squad.json: a small English SQuAD v1.1-format benchmark.

Paragraphs: the three English files of the bundled corpus (data/corpus/related/*-en.txt)
and the prose paragraphs of Python 3.11 standard-library module docstrings (PSF
License). Questions: written by hand below, paraphrased rather than copied, each
with its answer span; most paragraphs carry no question and act as distractors.

Run from the repository root with the project's Python 3.11:
    .venv/bin/python bench/data/make_english_squad.py
The output is committed, so the benchmark does not change with the Python version.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / "english_squad.json"
CORPUS_FILES = {"06-eccp": "06-eccp-supporting-policymakers-en.txt",
                "07-its-owl": "07-its-owl-leading-edge-cluster-en.txt",
                "08-hamburg": "08-hamburg-aviation-cluster-en.txt"}
SKIP_MODULES = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo"}

# (article, a snippet that picks the paragraph, question, answer as it appears in that paragraph)
QUESTIONS = [
    ("06-eccp", "Member States and regions", "How many clusters are there across the EU-27 regions?", "over 1,500"),
    ("06-eccp", "Member States and regions", "What share of total EU employment do clusters account for?", "almost 25%"),
    ("06-eccp", "Member States and regions", "Across how many EU regions are the clusters spread?", "200 EU-27 regions"),
    ("06-eccp", "country factsheets", "Where can policymakers look up national and regional cluster policies?", "country factsheets"),
    ("06-eccp", "interactive mapping tool", "Which tool lets users explore clusters by sector, ecosystem and region?", "interactive mapping tool"),
    ("06-eccp", "Our new policy toolkit", "What should regions use to search for good practices on the twin transition?", "policy toolkit"),
    ("07-its-owl", "digital event", "How many company and research representatives attended the Horizons it's OWL event?", "more than 130"),
    ("07-its-owl", "digital event", "On which day did the Horizons it's OWL event take place?", "22 February"),
    ("07-its-owl", "digital event", "What do the stakeholders regard as the next big challenge?", "Sustainability and climate protection"),
    ("07-its-owl", "With over 200 members", "How many members does the it's OWL cluster have?", "over 200 members"),
    ("07-its-owl", "With over 200 members", "What are the roughly 30 it's OWL projects worth?", "120 million euros"),
    ("07-its-owl", "With over 200 members", "For how long is the funding of the cluster management secured?", "another four years"),
    ("07-its-owl", "With over 200 members", "Who is the managing director that praised the cluster's development?", "Günter Korder"),
    ("07-its-owl", "transfer projects", "How many transfer projects has it's OWL carried out?", "over 100 transfer projects"),
    ("07-its-owl", "transfer projects", "In which field has it's OWL set national standards?", "AI"),
    ("07-its-owl", "Miele CEO", "Which company does the new chairman of the cluster board run?", "Miele"),
    ("07-its-owl", "Miele CEO", "According to Gausemeier, what did it's OWL become a pioneer for?", "Industry 4.0"),
    ("08-hamburg", "core competencies", "How many specialists work in aviation in the Hamburg region?", "More than 40,000"),
    ("08-hamburg", "core competencies", "Which three large companies lead aviation in Hamburg?", "Airbus, Lufthansa Technik and Hamburg Airport"),
    ("08-hamburg", "core competencies", "How many suppliers contribute to the Hamburg aviation industry?", "more than 300 suppliers"),
    ("08-hamburg", "In January 2011", "When was the Hamburg aviation cluster association officially founded?", "January 2011"),
    ("08-hamburg", "In January 2011", "How many founding members did the Hamburg aviation association have?", "fifteen"),
    ("08-hamburg", "Joint Initiative", "In what year did the industry-wide aviation network in Hamburg begin?", "2001"),
    ("08-hamburg", "Joint Initiative", "Besides Toulouse, which city became the second major site for the A380?", "Hamburg"),
    ("08-hamburg", "In 2008 the network", "When did the Hamburg network receive the Leading-Edge Cluster award?", "2008"),
    ("heapq", "Heaps are arrays", "Which element of a heap is always the smallest?", "a[0]"),
    ("csv", "Comma Separated Value", "Which PEP describes the interface of the CSV module?", "PEP 305"),
    ("csv", "Comma Separated Value", "What are the three basic APIs of the csv module?", "reading, writing, and registration of dialects"),
    ("shelve", 'A "shelf" is', "What kind of object is a shelf?", "a persistent, dictionary-like object"),
    ("shelve", "To avoid the problem with mutable entries", "Which keyword argument of shelve.open avoids the problem with mutable entries?", "writeback=True"),
    ("timeit", "If -n is not given", "How long must the total run take when timeit chooses the loop count itself?", "at least 0.2 seconds"),
    ("sched", "Events are specified by tuples", "In the event scheduler, what do lower priority numbers stand for?", "higher priority"),
    ("marshal", "binary format. The format is specific", "What is the marshal format independent of?", "machine architecture issues"),
    ("marshal", "Version 0 is the historical format", "Which marshal version stores floating point numbers in binary?", "version 2"),
    ("marshal", "Not all Python object types", "Which lists and dictionaries must not be written with marshal?", "recursive lists and dictionaries"),
    ("tempfile", "generic, low- and high-level", "Which temporary-file function suffers from race conditions?", "mktemp"),
    ("copy", "shallow and deep copying", "For which objects does deep versus shallow copying make a difference?", "compound objects"),
    ("collections", "specialized container datatypes", "What does the collections module provide as alternatives to dict, list, set and tuple?", "specialized container datatypes"),
    ("fileinput", "This iterates over the lines", "Where does fileinput read from when no file names are given?", "sys.stdin"),
    ("fileinput", "All files are opened", "In which mode are files opened by fileinput unless told otherwise?", "text mode"),
    ("uuid", "If all you want is a unique ID", "Which UUID function can leak the computer's network address?", "uuid1()"),
    ("uuid", "If all you want is a unique ID", "Which function gives a random UUID?", "uuid4()"),
    ("random", "The period is", "What is the period of Python's random number generator?", "2**19937-1"),
    ("site", "A path configuration file", "What file name pattern do path configuration files use?", "<package>.pth"),
    ("site", "pyvenv.cfg", "Which configuration file one directory above the interpreter marks a virtual environment?", "pyvenv.cfg"),
    ("zipimport", "It is usually not needed", "For which entries of sys.path does the import system use zipimport?", "paths to Zip archives"),
    ("doctest", "This won't display anything", "What is the last line printed when a doctest example fails?", "Test failed."),
    ("configparser", "A configuration file consists of sections", "Which RFC's style do configuration file continuations follow?", "RFC 822"),
    ("socketserver", "The classes in this module favor", "Which server type do the socketserver classes favour as simplest to write?", "a synchronous TCP/IP server"),
    ("socketserver", "Forking and threading versions", "Which mix-ins give forking and threading servers?", "ForkingMixIn and ThreadingMixIn"),
    ("struct", "Functions to convert between Python values and C structs", "Which Python objects hold the data of a C struct?", "bytes objects"),
    ("hashlib", "Hash objects have these methods", "How long is a hexdigest compared with the digest?", "double length"),
    ("pyclbr", "The interface consists of a single function", "What kind of object does readmodule_ex return?", "a dictionary"),
    ("argparse", "ArgumentParser -- The main entry point", "Which method turns the command-line arguments into an object with attributes?", "parse_args()"),
    ("typing", "Among other things", "Which special types does the typing module offer?", "NewType, NamedTuple, TypedDict"),
    ("ssl", "CERT_NONE", "Which setting validates certificates only when the peer sends one?", "CERT_OPTIONAL"),
    ("subprocess", "Main API", "What does subprocess.run hand back when the command finishes?", "a CompletedProcess instance"),
    ("wave", "getnchannels()", "How many audio channels does a stereo WAVE file report?", "2 for stereo"),
]


def _clean(text: str) -> str:
    return " ".join(text.split())


def corpus_paragraphs(path: Path) -> list[str]:
    """Blank-line blocks after the header; short heading lines join the block that follows."""
    text = path.read_text(encoding="utf-8", errors="replace").split("\n\n", 1)[1]
    blocks, pending = [], ""
    for block in re.split(r"\n\s*\n", text):
        block = _clean(block)
        if not block:
            continue
        if len(block) < 80:
            pending = f"{pending} {block}".strip()
            continue
        blocks.append(f"{pending}. {block}" if pending else block)
        pending = ""
    return blocks


def stdlib_paragraphs(name: str) -> list[str]:
    """Prose paragraphs (>150 chars, mostly letters) of a module's docstring."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            doc = (importlib.import_module(name).__doc__ or "").strip()
    except Exception:
        return []
    paras = [p.strip() for p in re.split(r"\n\s*\n", doc) if len(p.strip()) > 150]
    return [_clean(p) for p in paras if sum(c.isalpha() or c == " " for c in p) / len(p) > 0.85]


def main() -> int:
    if sys.version_info[:2] != (3, 11):
        print("run with Python 3.11 (the docstrings differ between versions)", file=sys.stderr)
        return 2
    articles: dict[str, dict] = {}
    for key, fname in CORPUS_FILES.items():
        path = REPO / "data" / "corpus" / "related" / fname
        title = path.read_text(encoding="utf-8", errors="replace").split("\n")[1].removeprefix("title: ")
        articles[key] = {"title": title, "source": f"data/corpus/related/{fname}",
                                            "paragraphs": corpus_paragraphs(path)}
    for name in sorted(sys.stdlib_module_names):
        if name.startswith("_") or name in SKIP_MODULES:
            continue
        paras = stdlib_paragraphs(name)
        if paras:
            articles[name] = {"title": f"Python standard library: the {name} module",
                              "source": f"Python 3.11 docstring of {name}", "paragraphs": paras}

    qas: dict[tuple[str, int], list] = {}
    for n, (art, snippet, question, answer) in enumerate(QUESTIONS):
        paras = articles[art]["paragraphs"]
        found = [i for i, p in enumerate(paras) if snippet in p]
        if len(found) != 1:
            raise SystemExit(f"{art}: snippet {snippet!r} matches {len(found)} paragraphs")
        start = paras[found[0]].find(answer)
        if start < 0:
            raise SystemExit(f"{art}: answer {answer!r} not in paragraph {found[0]}")
        qas.setdefault((art, found[0]), []).append(
            {"id": f"EN_{n:03d}", "question": question, "answers": [{"text": answer, "answer_start": start}]})

    data = []
    for art, a in articles.items():
        data.append({"title": a["title"], "source": a["source"], "paragraphs": [
            {"context": p, "qas": qas.get((art, i), [])} for i, p in enumerate(a["paragraphs"])]})
    OUT.write_text(json.dumps({"version": "1.1", "data": data}, ensure_ascii=False, indent=1) + "\n",
                   encoding="utf-8")
    n_par = sum(len(a["paragraphs"]) for a in data)
    print(f"wrote {OUT}: {len(data)} articles, {n_par} paragraphs, {len(QUESTIONS)} questions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
