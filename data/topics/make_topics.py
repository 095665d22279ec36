#!/usr/bin/env python3
"""Generate the dtrain "topics" text-classification dataset (standard library only).

Four balanced classes: sports, cooking, technology, weather. Each text is 1-2 short
English sentences (8-30 words) built from templates and vocabulary lists.

Generalisation split: every class has train templates and valid-only templates, and
most vocabulary lists have a valid-only tail. train.jsonl uses only train templates and
train vocabulary; valid.jsonl draws about half of its texts from valid-only templates and
prefers held-out vocabulary, and no valid text occurs in train.

Some deliberately harder cases are included (cooking texts that mention temperatures,
sports texts that mention rain, technology texts about weather apps or heatwaves,
weather texts that mention satellites), but the topic stays clear to a human reader.

Usage:  python3 data/topics/make_topics.py      (writes next to this file; deterministic)
"""

import json
import os
import random
import re

SEED = 7
N_TRAIN_PER_CLASS = 160
N_VALID_PER_CLASS = 40
HERE = os.path.dirname(os.path.abspath(__file__))

# Each vocabulary entry: (train values, valid-only values).
SPORTS = {
    "vocab": {
        "sport": (["football", "basketball", "tennis", "cricket", "rugby", "hockey", "baseball", "volleyball"],
                  ["golf", "badminton", "handball", "water polo"]),
        "team": (["the home side", "the visitors", "the champions", "the underdogs", "the national team",
                  "the local club", "the university team"],
                 ["the league leaders", "the youth squad", "the newly promoted side"]),
        "player": (["captain", "coach", "veteran player", "young star", "substitute", "top scorer"],
                   ["team manager", "rookie", "vice-captain"]),
        "event": (["championship", "cup final", "derby", "league match", "tournament", "semi-final"],
                  ["play-off", "world cup qualifier", "season opener"]),
        "won": (["won", "clinched", "narrowly took", "comfortably won"], ["snatched", "sealed"]),
        "score": ([], []),
        "minute": ([], []),
    },
    "train": [
        "{team} {won} the {event} after a tense second half.",
        "The {player} was praised for a brilliant performance in the {sport} {event}.",
        "Fans packed the stadium to watch {team} in the {event}. The atmosphere was electric.",
        "Our {sport} coach made us run extra drills after we lost {score} on Saturday.",
        "After months of rehabilitation, the {player} finally returned from injury for the {event}.",
        "The referee sent off a player in the {minute}th minute of the {sport} {event}.",
        "Tickets for the {sport} {event} sold out within an hour of going on sale.",
        "{team} will face their old rivals in the {event} next weekend.",
        "I joined a local {sport} club to get fit and meet new people.",
        "Heavy rain delayed the {sport} {event}, but {team} still won {score}.",
        "The {player} scored twice as {team} {won} the {event} {score}.",
        "Training camp starts in July, and the {player} wants the whole {sport} squad in peak condition.",
    ],
    "valid": [
        "Commentators called it the greatest {sport} comeback they had ever seen.",
        "The {player} signed a new three-year contract with {team}.",
        "She trained every morning before school and finally made the national {sport} squad.",
        "Even in the freezing wind, {team} kept attacking and {won} the {event} {score}.",
        "The crowd booed when the umpire overturned the decision late in the {sport} {event}.",
    ],
}

COOKING = {
    "vocab": {
        "dish": (["lasagna", "vegetable soup", "banana bread", "chicken curry", "pancakes", "risotto",
                  "apple pie", "stir-fry", "tomato sauce"],
                 ["paella", "shepherd's pie", "lentil stew", "focaccia"]),
        "ingredient": (["garlic", "onions", "butter", "fresh basil", "brown sugar", "olive oil", "ginger",
                        "lemon zest", "parmesan", "chilli flakes"],
                       ["smoked paprika", "cinnamon", "coconut milk", "thyme"]),
        "tool": (["frying pan", "saucepan", "wok", "large pan"],
                 ["cast-iron skillet", "casserole dish"]),
        "aromatic": (["garlic", "onions", "ginger", "shallots", "leeks", "celery"],
                     ["spring onions", "fennel"]),
        "spice": (["cumin", "nutmeg", "black pepper", "chilli flakes", "dried oregano", "turmeric"],
                  ["smoked paprika", "cinnamon", "dried thyme"]),
        "side": (["crusty bread", "a green salad", "steamed rice", "roast potatoes"],
                 ["garlic naan", "buttered noodles"]),
        "temp": ([], []),
        "mins": ([], []),
        "n": ([], []),
    },
    "train": [
        "Preheat the oven to {temp} degrees and bake the {dish} for {mins} minutes.",
        "Gently fry the {aromatic} in a {tool} until soft and golden.",
        "My grandmother's {dish} recipe uses a pinch of {spice} and plenty of {aromatic}.",
        "Let the {dish} rest for ten minutes before serving it with {side}.",
        "Add the {aromatic} to the {tool} and stir for {n} minutes over medium heat.",
        "For a richer flavour, swap the {ingredient} for {ingredient2} in the {dish}.",
        "I burned the {dish} last night because I forgot to set a timer.",
        "Season the sauce with salt, pepper and {spice}, then taste and adjust before serving.",
        "Knead the dough for {n} minutes until it is smooth, then leave it somewhere warm to rise.",
        "Bring a large pot of salted water to the boil before adding the pasta.",
        "The {dish} needs a splash of vinegar at the end to balance the rich {ingredient}.",
        "Whisk the eggs with the {spice} in a bowl until the mixture is light and fluffy.",
    ],
    "valid": [
        "The {dish} tastes even better the next day, once the flavours have had time to blend.",
        "If the {dish} looks dry, pour in a little stock and cover the pan with a lid.",
        "Keep the butter cold until the last moment so the pastry stays flaky.",
        "Roast the vegetables at {temp} degrees with {aromatic} and {spice} until the edges caramelise.",
        "Our dinner guests asked for the {dish} recipe, especially the {spice} crust.",
    ],
}

TECH = {
    "vocab": {
        "device": (["smartphone", "laptop", "tablet", "smartwatch", "router", "gaming console", "e-reader"],
                   ["VR headset", "smart speaker", "drone"]),
        "company": (["the company", "a startup", "a chip maker", "the developers", "the manufacturer"],
                    ["the open-source project", "the cloud provider"]),
        "thing": (["operating system", "web browser", "password manager", "database", "photo app",
                   "video editor", "messaging app"],
                  ["compiler", "firmware", "spreadsheet program"]),
        "data": (["passwords", "private messages", "credit card numbers", "location history"],
                 ["session tokens", "email addresses"]),
        "gb": ([], []),
    },
    "train": [
        "The latest {thing} update makes my {device} noticeably faster.",
        "{company} announced a new {device} with a longer battery life and a brighter screen.",
        "After the software upgrade, my {device} kept disconnecting from the Wi-Fi network.",
        "Engineers patched a security bug that let attackers steal {data} through the {thing}.",
        "I finally replaced my old {device} because it could not run the new {thing}.",
        "The {thing} crashed twice today, so I filed a bug report with the logs attached.",
        "{company} is training a larger AI model on thousands of GPUs.",
        "Back up your files before installing the new {thing} on your {device}.",
        "The new weather app on my {device} drains the battery in just a few hours.",
        "This {device} ships with {gb} GB of memory and a faster processor than last year's model.",
        "Our team moved the {thing} to the cloud, which cut server costs by a third.",
        "Turn on two-factor authentication so nobody can use your stolen {data}.",
    ],
    "valid": [
        "Developers can now write plugins for the {thing} in Python or JavaScript.",
        "My {device} overheats whenever I run video calls and a code editor at the same time.",
        "The data centre's cooling failed during a heatwave, so the website was offline for hours.",
        "{company} open-sourced its {thing} so anyone can audit the code.",
        "A faulty driver update left thousands of {device} owners with a blank screen.",
    ],
}

WEATHER = {
    "vocab": {
        "place": (["the coast", "the northern hills", "the city centre", "the valley", "the mountains",
                   "eastern districts", "the islands", "inland areas"],
                  ["the southern plains", "the lakeside towns", "the western highlands"]),
        "cond": (["heavy rain", "thunderstorms", "thick fog", "strong winds", "light snow", "hail",
                  "drizzle", "scattered showers"],
                 ["sleet", "freezing rain", "blizzard conditions"]),
        "when": (["tonight", "tomorrow morning", "this weekend", "on Monday", "on Thursday",
                  "later this week", "overnight"],
                 ["on Saturday afternoon", "early next week"]),
        "month": (["March", "June", "October", "November", "January"], ["April", "August"]),
        "dir": (["northerly", "westerly", "southerly"], ["easterly"]),
        "t": ([], []),
        "tcold": ([], []),
    },
    "train": [
        "Forecasters expect {cond} across {place} {when}, so plan any outdoor trips carefully.",
        "Take an umbrella {when}, because there is a high chance of {cond} by the afternoon.",
        "A weather warning has been issued for {place} ahead of {cond} expected {when}.",
        "The morning started with {cond}, but the skies should clear later in the day.",
        "Temperatures will fall to {tcold} degrees overnight, so expect frost and icy roads.",
        "It has been the wettest {month} on record in {place}.",
        "Humidity will stay high {when}, and the wind will turn {dir} in the evening.",
        "After a week of {cond}, {place} can look forward to dry and sunny weather.",
        "The barometer is falling fast, which usually means a storm is on its way.",
        "Expect a mild, cloudy day with a top temperature of {t} degrees and a gentle breeze.",
        "Rivers in {place} are rising after {cond} fell for most of {month}.",
        "Tomorrow will be bright and breezy, with {cond} possible over {place} in the evening.",
    ],
    "valid": [
        "A cold front will sweep through {place} {when}, bringing {cond} and a sharp drop in temperature.",
        "Meteorologists say the {cond} should ease {when}.",
        "The UV index will be very high tomorrow afternoon, so wear sunscreen if you go outside.",
        "Satellite images show a band of cloud heading toward {place}, with {cond} likely {when}.",
        "Gusts of up to 90 kilometres per hour could bring down trees across {place} {when}.",
    ],
}

CLASSES = {"sports": SPORTS, "cooking": COOKING, "technology": TECH, "weather": WEATHER}


def numeric(slot, rng):
    if slot == "score":
        a = rng.randint(1, 5)
        return "%d-%d" % (a, rng.randint(0, a - 1))
    if slot == "minute":
        return str(rng.randint(11, 89))
    if slot == "temp":
        return str(rng.choice([160, 170, 180, 190, 200, 220]))
    if slot == "mins":
        return str(rng.choice([20, 25, 30, 35, 40, 45, 50, 60]))
    if slot == "n":
        return str(rng.randint(2, 10))
    if slot == "gb":
        return str(rng.choice([8, 12, 16, 32, 64]))
    if slot == "t":
        return str(rng.randint(4, 31))
    if slot == "tcold":
        return str(rng.randint(-8, 1))
    raise KeyError(slot)


def fill(template, vocab, rng, split):
    used = {}
    taken = {}

    def pick(m):
        slot = m.group(1)
        key = re.sub(r"\d+$", "", slot)
        if slot in used:
            return used[slot]
        tr, va = vocab[key]
        if not tr and not va:
            val = numeric(key, rng)
        else:
            if split == "train":
                pool = tr
            else:
                pool = va if (va and rng.random() < 0.6) else tr + va
            pool = [x for x in pool if x not in taken.get(key, ())] or tr + va
            val = rng.choice(pool)
        taken.setdefault(key, set()).add(val)
        used[slot] = val
        return val

    text = re.sub(r"\{(\w+)\}", pick, template)
    return text[0].upper() + text[1:]


def generate(spec, split, n, rng, forbidden):
    out, seen = [], set(forbidden)
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 100000:
            raise SystemExit("could not generate enough unique texts")
        if split == "train":
            tpl = rng.choice(spec["train"])
        else:
            tpl = rng.choice(spec["valid"]) if rng.random() < 0.5 else rng.choice(spec["train"])
        text = fill(tpl, spec["vocab"], rng, split)
        if text in seen:
            continue
        nw = len(text.split())
        assert 8 <= nw <= 30, (nw, text)
        seen.add(text)
        out.append(text)
    return out


def main():
    rng = random.Random(SEED)
    train, valid = [], []
    for label in sorted(CLASSES):
        spec = CLASSES[label]
        tr = generate(spec, "train", N_TRAIN_PER_CLASS, rng, ())
        va = generate(spec, "valid", N_VALID_PER_CLASS, rng, tr)
        train += [{"text": t, "label": label} for t in tr]
        valid += [{"text": t, "label": label} for t in va]
    rng.shuffle(train)
    rng.shuffle(valid)
    assert not ({r["text"] for r in train} & {r["text"] for r in valid})
    for name, rows in (("train.jsonl", train), ("valid.jsonl", valid)):
        with open(os.path.join(HERE, name), "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    for name, rows in (("train", train), ("valid", valid)):
        counts = {}
        for r in rows:
            counts[r["label"]] = counts.get(r["label"], 0) + 1
        lens = [len(r["text"].split()) for r in rows]
        print("%s: %d texts %s, words %d-%d (mean %.1f)" % (
            name, len(rows), dict(sorted(counts.items())), min(lens), max(lens), sum(lens) / len(lens)))
    print("majority-class baseline: 25%")


if __name__ == "__main__":
    main()
