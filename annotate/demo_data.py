"""The demo's task family: small arithmetic word problems whose replies a program can check.

Pure Python, no Django: the demo project, the scripted annotators and the evaluation of every
model version all read the same family from here.

- A problem is a prompt (one of several wordings) with a known answer; a good reply states it in
  the guidelines' format, `The answer is N.`
- `reply_check` is the hidden check: True only for that format with the right number.
- `reply_grade` is the hidden preference the scripted annotators rank by (3 best): right number in
  the right format, right number in other words, right format with a wrong number, anything else.
- `corpus` is pretraining text from the same family: the sums and differences in prose, but never
  in the reply format (so a base model knows arithmetic and the demonstrations teach the format).
- `earlier_reply` is an earlier assistant's reply, right a third of the time: the seed prompts come
  with two each, so that the first round ranks model replies too.
- `prompt_pool` and `heldout_problems` never share a prompt text: the held-out problems are for
  measuring versions only and never enter the project.
"""

import random
import re
from dataclasses import dataclass

NAMES = ["Alice", "Bob", "Carol", "Dan", "Eve", "Finn", "Grace", "Hugo", "Iris", "Jack", "Kim", "Leo"]
THINGS = ["apples", "books", "coins", "pens", "stamps", "shells", "cards", "marbles", "cookies", "stickers"]
# Operands stay small so that a model of about a million parameters can learn the table in minutes.
LEFT, RIGHT = range(1, 13), range(1, 10)

ADD_FORMS = [
    "What is {a} + {b}?",
    "What is {a} plus {b}?",
    "Add {a} and {b}.",
    "{name} has {a} {things} and gets {b} more. How many {things} does {name} have now?",
    "A box holds {a} {things}. {name} puts in {b} more. How many {things} are in the box?",
]
SUB_FORMS = [
    "What is {c} - {b}?",
    "What is {c} minus {b}?",
    "{name} has {c} {things} and gives away {b}. How many {things} are left?",
    "A box holds {c} {things}. {name} takes out {b}. How many {things} are in the box now?",
]
REPLY = "The answer is {n}."
_REPLY_RE = re.compile(r"^\s*The answer is (-?\d+)\.?\s*$")
_NUMBER_RE = re.compile(r"-?\d+")


@dataclass(frozen=True)
class Problem:
    prompt: str
    answer: int


def problem_make(rng: random.Random) -> Problem:
    a, b = rng.choice(LEFT), rng.choice(RIGHT)
    name, things = rng.choice(NAMES), rng.choice(THINGS)
    if rng.random() < 0.5:
        return Problem(rng.choice(ADD_FORMS).format(a=a, b=b, name=name, things=things), a + b)
    return Problem(rng.choice(SUB_FORMS).format(c=a + b, b=b, name=name, things=things), a)


def _distinct(rng: random.Random, count: int, taken: set[str]) -> list[Problem]:
    problems = []
    while len(problems) < count:
        problem = problem_make(rng)
        if problem.prompt not in taken:
            taken.add(problem.prompt)
            problems.append(problem)
    return problems


def heldout_problems(count: int = 300, seed: int = 2026) -> list[Problem]:
    """The problems every version is measured on; never imported into a project."""
    return _distinct(random.Random(f"heldout-{seed}"), count, set())


def prompt_pool(count: int, seed: int = 7) -> list[Problem]:
    """Problems for the project (seed prompts and the ones scripted annotators write), none held out."""
    taken = {p.prompt for p in heldout_problems()}
    return _distinct(random.Random(f"pool-{seed}"), count, taken)


def answer_of(prompt: str) -> int | None:
    """The answer to a prompt of the family, read back from its text (None if it is not one)."""
    numbers = [int(n) for n in _NUMBER_RE.findall(prompt)]
    if len(numbers) != 2:
        return None
    first, second = numbers
    subtracting = any(word in prompt for word in (" - ", "minus", "gives away", "takes out"))
    return first - second if subtracting else first + second


def reply_check(prompt: str, reply: str) -> bool:
    """The hidden check: the reply is `The answer is N.` with the right N."""
    answer = answer_of(prompt)
    found = _REPLY_RE.match(reply or "")
    return answer is not None and found is not None and int(found.group(1)) == answer


def reply_grade(prompt: str, reply: str) -> int:
    """The hidden preference, 3 best: right and in format; right number in other words; in format but
    wrong; anything else."""
    if reply_check(prompt, reply):
        return 3
    answer = answer_of(prompt)
    numbers = [int(n) for n in _NUMBER_RE.findall(reply or "")]
    if answer is not None and numbers and numbers[-1] == answer:
        return 2
    return 1 if _REPLY_RE.match(reply or "") else 0


def reply_write(prompt: str, rng: random.Random, *, error_rate: float, sloppy_rate: float) -> str:
    """A demonstration as a person writes it: usually right, sometimes a slip of the number or the format."""
    answer = answer_of(prompt)
    if rng.random() < error_rate:
        answer += rng.choice([-2, -1, 1, 2])
    if rng.random() < sloppy_rate:
        return rng.choice(["{n}", "It is {n}.", "I think it is {n}.", "{n}, I believe."]).format(n=answer)
    return REPLY.format(n=answer)


# Pretraining sentences: the facts, and the prompts' own wordings answered in other words than the reply format.
FACT_FORMS = [
    "{a} plus {b} is {c}.",
    "{a} + {b} = {c}.",
    "{c} minus {b} is {a}.",
    "{c} - {b} = {a}.",
    "{name} had {a} {things} and got {b} more, so {name} had {c} {things}.",
    "{name} had {c} {things} and gave away {b}, so {a} {things} were left.",
    "If you add {b} to {a} you get {c}, and if you take {b} from {c} you get {a}.",
]
ADD_ANSWERS = ["{c}.", "It is {c}.", "{c} in all."]
SUB_ANSWERS = ["{a}.", "It is {a}.", "{a} are left."]


def corpus(documents: int = 16000, seed: int = 11) -> list[str]:
    """Pretraining text of the family, never in the reply format (so a base model knows arithmetic
    and the demonstrations teach the format): one short document per fact or answered question.

    Short documents, each read from its start (the demo preset trains the base model on one padded
    row per document): a model of a million parameters with learned positions did not learn the
    sums at all from long documents packed into blocks, where a fact sits at any position.
    """
    rng = random.Random(f"corpus-{seed}")
    docs = []
    for _ in range(documents):
        a, b = rng.choice(LEFT), rng.choice(RIGHT)
        words = dict(a=a, b=b, c=a + b, name=rng.choice(NAMES), things=rng.choice(THINGS))
        roll = rng.random()
        if roll < 0.3:
            docs.append(rng.choice(FACT_FORMS).format(**words))
        elif roll < 0.65:
            docs.append(f"{rng.choice(ADD_FORMS)} {rng.choice(ADD_ANSWERS)}".format(**words))
        else:
            docs.append(f"{rng.choice(SUB_FORMS)} {rng.choice(SUB_ANSWERS)}".format(**words))
    return docs


def earlier_reply(prompt: str, rng: random.Random) -> str:
    """A reply by "an earlier assistant", imported with the seed prompts so that the first round has
    model replies to rank: right and in the format a third of the time, else a near miss, the right
    number in other words, or off the point."""
    answer = answer_of(prompt)
    roll = rng.random()
    if roll < 0.35:
        return REPLY.format(n=answer)
    if roll < 0.7:
        return REPLY.format(n=answer + rng.choice([-3, -2, -1, 1, 2, 3]))
    if roll < 0.9:
        return rng.choice(["{n}", "It is {n}.", "I think it is {n}.", "{n}, I believe."]).format(n=answer)
    return rng.choice(["I am not sure.", "Let me think about it.", "That is a good question."])


def score_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson 95% interval of a share."""
    if total == 0:
        return (0.0, 0.0)
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * ((p * (1 - p) / total + z * z / (4 * total * total)) ** 0.5) / (1 + z * z / total)
    return (max(0.0, centre - half), min(1.0, centre + half))
