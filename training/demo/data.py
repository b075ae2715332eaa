"""The demo's task family: small arithmetic word problems whose replies a program can check.

Pure Python, no Django: the demo project, the scripted annotators and the evaluation of every
model version all read the same family from here.

- A problem is a question (one of several wordings) with a known answer; most questions also state
  the form of the reply (`FORMS`): "It is N.", ending with "!", or starting with "Sure,".
  Without such an instruction a good reply is the guidelines' `The answer is N.`
- `reply_check` is the hidden check: True only for the right number in the form the prompt asks for.
- `reply_grade` is the hidden preference the scripted annotators rank by (4 best): right number in
  the asked form, in the guidelines' form, in other words; a reply form with a wrong number; anything else.
- Writing and checking differ on purpose, as they do for people (the premise of learning from
  rankings): the scripted writers follow the asked form only about half the time and otherwise
  write the guidelines' form out of habit, while a ranker sees at a glance which reply follows it.
  So SFT learns the form about as often as the demonstrations show it, and the reward model can
  learn to check it.
- `corpus` is pretraining text from the same family: the sums and differences in prose, never in
  a reply form (so a base model knows arithmetic and the demonstrations teach the forms).
- `earlier_reply` is an earlier assistant's reply: the seed prompts come with two each, so that
  the first round ranks model replies too.
- `prompt_pool` and `heldout_problems` never share a prompt text: the held-out problems are for
  measuring versions only and never enter the project.
"""

import random
import re
from dataclasses import dataclass

NAMES = ["Alice", "Bob", "Carol", "Dan", "Eve", "Finn", "Grace", "Hugo", "Iris", "Jack", "Kim", "Leo"]
THINGS = ["apples", "books", "coins", "pens", "stamps", "shells", "cards", "marbles", "cookies", "stickers"]
# Operands stay small (90 facts: 45 sums, 45 differences) so that a model of half a million parameters
# learns the table in minutes, and its reward model, from a few hundred rankings, can check a number.
LEFT, RIGHT = range(1, 10), range(1, 6)

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
# Instructions a prompt may end with, and the reply form each asks for ("" asks for none: `REPLY`).
FORMS = {
    "": REPLY,
    "Answer briefly.": "It is {n}.",
    "End your answer with an exclamation mark.": "The answer is {n}!",
    "Begin your answer with Sure.": "Sure, the answer is {n}.",
}
SLOPPY = ["I think it is {n}.", "{n}, I believe.", "Maybe {n}."]
_FORM_RES = {instruction: re.compile(r"^\s*" + re.escape(form).replace(re.escape("{n}"), r"(-?\d+)") + r"\s*$")
             for instruction, form in FORMS.items()}
_REPLY_RE = _FORM_RES[""]
_NUMBER_RE = re.compile(r"-?\d+")


@dataclass(frozen=True)
class Problem:
    prompt: str
    answer: int


def problem_make(rng: random.Random) -> Problem:
    a, b = rng.choice(LEFT), rng.choice(RIGHT)
    name, things = rng.choice(NAMES), rng.choice(THINGS)
    instruction = rng.choice(list(FORMS))
    if rng.random() < 0.5:
        question, answer = rng.choice(ADD_FORMS).format(a=a, b=b, name=name, things=things), a + b
    else:
        question, answer = rng.choice(SUB_FORMS).format(c=a + b, b=b, name=name, things=things), a
    return Problem(f"{question} {instruction}".strip(), answer)


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


def instruction_of(prompt: str) -> str:
    """The reply-form instruction a prompt ends with ("" if none)."""
    return next((i for i in FORMS if i and prompt.rstrip().endswith(i)), "")


def reply_form(prompt: str) -> str:
    """The form a reply to `prompt` should take, with `{n}` for the number."""
    return FORMS[instruction_of(prompt)]


def _in_form(prompt: str, reply: str) -> int | None:
    """The number of a reply in the form the prompt asks for (None if it is not in that form)."""
    found = _FORM_RES[instruction_of(prompt)].match(reply or "")
    return int(found.group(1)) if found else None


def reply_check(prompt: str, reply: str) -> bool:
    """The hidden check: the reply gives the right number in the form the prompt asks for."""
    answer = answer_of(prompt)
    return answer is not None and _in_form(prompt, reply) == answer


def reply_grade(prompt: str, reply: str) -> int:
    """The hidden preference, 4 best: right and in the asked form; right in the guidelines' form (when
    another was asked); right number in other words; a reply form with a wrong number; anything else."""
    if reply_check(prompt, reply):
        return 4
    answer = answer_of(prompt)
    numbers = [int(n) for n in _NUMBER_RE.findall(reply or "")]
    if answer is not None and numbers and numbers[-1] == answer:
        return 3 if _REPLY_RE.match(reply) else 2
    return 1 if _in_form(prompt, reply) is not None or _REPLY_RE.match(reply or "") else 0


def reply_write(prompt: str, rng: random.Random, *, error_rate: float, sloppy_rate: float,
                follow_rate: float = 1.0) -> str:
    """A demonstration as a person writes it: usually the right number; the asked form `follow_rate`
    of the time, else the guidelines' form out of habit; sometimes other words altogether."""
    answer = answer_of(prompt)
    if rng.random() < error_rate:
        answer += rng.choice([-2, -1, 1, 2])
    if rng.random() < sloppy_rate:
        return rng.choice(SLOPPY).format(n=answer)
    return (reply_form(prompt) if rng.random() < follow_rate else REPLY).format(n=answer)


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
ADD_ANSWERS = ["{c}.", "That makes {c}.", "{c} in all."]
SUB_ANSWERS = ["{a}.", "That leaves {a}.", "{a} are left."]


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
        words = {"a": a, "b": b, "c": a + b, "name": rng.choice(NAMES), "things": rng.choice(THINGS)}
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
    model replies to rank: the right number half the time (else a near miss), in the asked form a
    third of the time, else the guidelines' form or other words; now and then off the point."""
    answer = answer_of(prompt)
    if rng.random() < 0.1:
        return rng.choice(["I am not sure.", "Let me think about it.", "That is a good question."])
    number = answer if rng.random() < 0.5 else answer + rng.choice([-3, -2, -1, 1, 2, 3])
    roll = rng.random()
    form = reply_form(prompt) if roll < 0.35 else REPLY if roll < 0.75 else rng.choice(SLOPPY)
    return form.format(n=number)


def score_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson 95% interval of a share."""
    if total == 0:
        return (0.0, 0.0)
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * ((p * (1 - p) / total + z * z / (4 * total * total)) ** 0.5) / (1 + z * z / total)
    return (max(0.0, centre - half), min(1.0, centre + half))
