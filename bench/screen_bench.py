"""Measure the personal-data detectors: precision and recall per kind, and texts screened per second.

Two sets built here (bench/screen_texts.py, seeded, nothing downloaded): the tuning set and, with --heldout (or
--both), a set written apart from the tuning (other templates, formats and look-alikes). Scoring is span-level: a
finding counts as right if it overlaps a true span of the same kind; a true span counts as found if a finding of its
kind overlaps it. Kinds with no true spans in a set are listed with their false findings only.

    .venv/bin/python bench/screen_bench.py --both
"""

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import screen_texts

from annotate.screen import detectors

TARGETED = ("email", "phone", "card", "iban", "ip")


def scrubadub_defaults():
    """Return scrubadub 2.0.1's default Scrubber as a detector like ours, for comparison (its own email, phone
    and bare-pattern card detectors; no IBAN or IP detector)."""
    import scrubadub

    scrubber = scrubadub.Scrubber()
    kinds = {"email": "email", "phone": "phone", "credit_card": "card", "url": "url", "credential": "credential",
             "social_security_number": "national_id"}

    def find(text):
        return [detectors.Span(kinds[f.type], f.beg, f.end, "scrubadub") for f in scrubber.iter_filth(text)
                if f.type in kinds]
    return find


def score(samples, find=detectors.personal_data):
    """Return ({kind: (tp, fp, found, total)}, [mistakes], texts per second)."""
    find("warm up the lazy imports: a@b.example https://www.example.com username: a password: b")
    started = time.perf_counter()
    found_all = [find(text) for text, _ in samples]
    rate = len(samples) / (time.perf_counter() - started)
    counts, mistakes = {}, []
    for (text, truth), found in zip(samples, found_all):
        for span in found:
            c = counts.setdefault(span.kind, [0, 0, 0, 0])
            if any(k == span.kind and span.start < e and s < span.end for k, s, e in truth):
                c[0] += 1
            else:
                c[1] += 1
                mistakes.append(f"false {span.kind}: {text[span.start:span.end]!r} in {text!r}")
        for kind, s, e in truth:
            c = counts.setdefault(kind, [0, 0, 0, 0])
            c[3] += 1
            if any(span.kind == kind and span.start < e and s < span.end for span in found):
                c[2] += 1
            else:
                mistakes.append(f"missed {kind}: {text[s:e]!r} in {text!r}")
    return counts, mistakes, rate


def report(name, samples, show, find=detectors.personal_data):
    counts, mistakes, rate = score(samples, find)
    chars = sum(len(t) for t, _ in samples) / len(samples)
    print(f"\n{name}: {len(samples)} texts, {chars:.0f} chars on average, "
          f"{sum(1 for _, t in samples if not t)} with nothing to find (look-alikes and clean)")
    print("span-level: a finding is right if it overlaps a true span of the same kind")
    print(f"{'kind':<12}{'precision':>10}{'recall':>8}{'true':>6}{'found':>7}{'false':>7}  target p>=0.95 r>=0.90")
    ok = True
    for kind in sorted(counts, key=lambda k: (k not in TARGETED, k)):
        tp, fp, hit, total = counts[kind]
        p = tp / (tp + fp) if tp + fp else float("nan")
        r = hit / total if total else float("nan")
        verdict = ""
        if kind in TARGETED and find is detectors.personal_data:
            met = (tp + fp == 0 or p >= 0.95) and r >= 0.9
            ok &= met
            verdict = "met" if met else "MISSED"
        print(f"{kind:<12}{p:>10.3f}{r:>8.3f}{total:>6}{hit:>7}{fp:>7}  {verdict}")
    print(f"texts/s on one core: {rate:,.0f}")
    if find is detectors.personal_data:
        # The same texts joined in pairs: the speed at about 200 characters or more a text.
        longer = [a + " " + b for (a, _), (b, _) in zip(samples[::2], samples[1::2])]
        started = time.perf_counter()
        for text in longer:
            find(text)
        took = time.perf_counter() - started
        print(f"texts/s on one core at {sum(map(len, longer)) / len(longer):.0f} chars: {len(longer) / took:,.0f}")
    for line in mistakes[:show]:
        print("  ", line)
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heldout", action="store_true", help="score the held-out set only")
    parser.add_argument("--both", action="store_true", help="score both sets")
    parser.add_argument("-n", type=int, default=2000, help="texts per set")
    parser.add_argument("--scrubadub", action="store_true", help="also score scrubadub's default Scrubber alone")
    parser.add_argument("--show", type=int, default=0, help="print this many mistakes per set")
    args = parser.parse_args()
    print("load:", subprocess.run(["uptime"], check=False, capture_output=True, text=True).stdout.strip())
    print(f"detectors version {detectors.VERSION}")
    ok = True
    if not args.heldout or args.both:
        ok &= report("tuning set", screen_texts.texts(seed=0, n=args.n), args.show)
    if args.heldout or args.both:
        ok &= report("held-out set", screen_texts.heldout_texts(seed=1, n=args.n), args.show)
    if args.scrubadub:
        sets = [("tuning set", screen_texts.texts(seed=0, n=args.n)), ("held-out set", screen_texts.heldout_texts(seed=1, n=args.n))]
        for name, samples in sets:
            report(f"scrubadub 2.0.1 defaults alone, {name} (for comparison, no targets)", samples, 0, scrubadub_defaults())
    print("\nall targets met" if ok else "\nsome targets missed")


if __name__ == "__main__":
    main()
