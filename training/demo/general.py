"""The general-ability check: short questions far from the demo's arithmetic, with answers a program can check.

A pretrained instruct model (SmolLM2-135M-Instruct, `demo_rounds --base`) arrives knowing capitals, simple facts
and how to follow a short instruction; fine-tuning it on the demo's replies may cost it some of that. Every
version a demo round measures is also asked these prompts, greedy, so the round's figures show what the hidden
check's gain cost. They are ours, written for this check, never imported into a project and never tuned on:
no sums, no differences, no reply forms of the demo.

A reply is right when it contains one of the accepted answers as a whole word (case-insensitive, but for the
questions about capital letters). Pure Python, no Django.
"""

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class GeneralPrompt:
    prompt: str
    answers: tuple[str, ...]
    case_sensitive: bool = False


GENERAL_PROMPTS = (
    GeneralPrompt("What is the capital of France?", ("Paris",)),
    GeneralPrompt("What is the capital of Japan?", ("Tokyo",)),
    GeneralPrompt("What is the capital of Italy?", ("Rome",)),
    GeneralPrompt("What is the capital of Germany?", ("Berlin",)),
    GeneralPrompt("What is the capital of Spain?", ("Madrid",)),
    GeneralPrompt("What is the capital of the United Kingdom?", ("London",)),
    GeneralPrompt("What is the capital of Russia?", ("Moscow",)),
    GeneralPrompt("What is the capital of Egypt?", ("Cairo",)),
    GeneralPrompt("Which planet is known as the Red Planet?", ("Mars",)),
    GeneralPrompt("What is the largest planet in our solar system?", ("Jupiter",)),
    GeneralPrompt("What is the largest ocean on Earth?", ("Pacific",)),
    GeneralPrompt("What do bees make?", ("honey",)),
    GeneralPrompt("What color is the sky on a clear day?", ("blue",)),
    GeneralPrompt("What is the chemical formula of water?", ("H2O", "H₂O")),
    GeneralPrompt("What gas do plants take in from the air to make their food?", ("carbon dioxide", "CO2", "CO₂")),
    GeneralPrompt("Who wrote Romeo and Juliet?", ("Shakespeare",)),
    GeneralPrompt("What language is mainly spoken in Brazil?", ("Portuguese",)),
    GeneralPrompt("How many days are there in a week?", ("7", "seven")),
    GeneralPrompt("How many months are there in a year?", ("12", "twelve")),
    GeneralPrompt("How many hours are there in a day?", ("24", "twenty-four", "twenty four")),
    GeneralPrompt("How many legs does a spider have?", ("8", "eight")),
    GeneralPrompt("At how many degrees Celsius does water boil at sea level?", ("100", "one hundred")),
    GeneralPrompt("What animal says moo?", ("cow", "cows")),
    GeneralPrompt("What is the opposite of hot?", ("cold",)),
    GeneralPrompt("What is the opposite of up?", ("down",)),
    GeneralPrompt("What is the plural of mouse?", ("mice",)),
    GeneralPrompt("Name one primary color.", ("red", "blue", "yellow")),
    GeneralPrompt("Translate the word 'hello' into Spanish.", ("hola",)),
    GeneralPrompt("Write the word cat in capital letters.", ("CAT",), case_sensitive=True),
    GeneralPrompt("Spell the word 'dog' backwards.", ("god", "g-o-d", "g o d")),
)


def general_check(item: GeneralPrompt, reply: str) -> bool:
    """Whether `reply` contains one of the item's answers as a whole word."""
    flags = 0 if item.case_sensitive else re.IGNORECASE
    return any(re.search(rf"(?<!\w){re.escape(answer)}(?!\w)", reply or "", flags) for answer in item.answers)
