#!/usr/bin/env python3
"""Generate the dtrain "ANSWER/WHY" instruction dataset (standard library only).

Every assistant reply has exactly two lines:

    ANSWER: <short answer>
    WHY: <one short sentence>

Facts are hard-coded below (capitals, element symbols, opposites, plurals, animal
sounds and young, planets, days/months); arithmetic and unit conversions are computed.
The split is by fact: a fact (e.g. "capital of Peru") used in valid.jsonl never appears
in train.jsonl under any phrasing. prompts.txt holds 5 questions that appear in neither.

Usage:  python3 data/instruct/make_instruct.py      (writes next to this file)
Output is deterministic (fixed seed, sorted iteration).
"""

import json
import os
import random

SEED = 20240611
N_TRAIN = 400
N_VALID = 60
HERE = os.path.dirname(os.path.abspath(__file__))

# Held-out demo prompts (their facts are excluded from train and valid).
PROMPTS = [
    "What is the capital of Japan?",
    "What is 9 times 8?",
    "What is the opposite of 'happy'?",
    "How many legs does a spider have?",
    "Which ocean is the largest on Earth?",
]
EXCLUDED_KEYS = {"capital:Japan", "mul:8x9", "opp:happy"}


def ordinal(n):
    if 10 <= n % 100 <= 20:
        suf = "th"
    else:
        suf = {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return "%d%s" % (n, suf)


def fmt_int(n):
    return "{:,}".format(n)


# ----------------------------------------------------------------------------------------
# Facts
# ----------------------------------------------------------------------------------------
CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Portugal", "Lisbon"), ("Japan", "Tokyo"), ("China", "Beijing"), ("India", "New Delhi"),
    ("Russia", "Moscow"), ("Canada", "Ottawa"), ("Australia", "Canberra"), ("Brazil", "Brasília"),
    ("Argentina", "Buenos Aires"), ("Mexico", "Mexico City"), ("Egypt", "Cairo"), ("Kenya", "Nairobi"),
    ("Nigeria", "Abuja"), ("Greece", "Athens"), ("Turkey", "Ankara"), ("Sweden", "Stockholm"),
    ("Norway", "Oslo"), ("Finland", "Helsinki"), ("Denmark", "Copenhagen"), ("Poland", "Warsaw"),
    ("Austria", "Vienna"), ("Hungary", "Budapest"), ("Ireland", "Dublin"), ("the United Kingdom", "London"),
    ("Belgium", "Brussels"), ("the Czech Republic", "Prague"), ("Romania", "Bucharest"), ("Bulgaria", "Sofia"),
    ("Serbia", "Belgrade"), ("Croatia", "Zagreb"), ("Ukraine", "Kyiv"), ("Thailand", "Bangkok"),
    ("Vietnam", "Hanoi"), ("South Korea", "Seoul"), ("the Philippines", "Manila"), ("Pakistan", "Islamabad"),
    ("Bangladesh", "Dhaka"), ("Iran", "Tehran"), ("Iraq", "Baghdad"), ("Saudi Arabia", "Riyadh"),
    ("Peru", "Lima"), ("Chile", "Santiago"), ("Colombia", "Bogotá"), ("Venezuela", "Caracas"),
    ("Cuba", "Havana"), ("New Zealand", "Wellington"), ("Morocco", "Rabat"), ("Ethiopia", "Addis Ababa"),
    ("Ghana", "Accra"), ("Iceland", "Reykjavík"), ("Nepal", "Kathmandu"), ("Mongolia", "Ulaanbaatar"),
    ("Uruguay", "Montevideo"), ("Ecuador", "Quito"), ("Algeria", "Algiers"), ("Tunisia", "Tunis"),
    ("Senegal", "Dakar"), ("Estonia", "Tallinn"), ("Latvia", "Riga"), ("Lithuania", "Vilnius"),
    ("Slovakia", "Bratislava"), ("Slovenia", "Ljubljana"), ("the United States", "Washington, D.C."),
    ("Jamaica", "Kingston"), ("Afghanistan", "Kabul"),
]

# (symbol, name, atomic number, Latin/other origin of the symbol or None)
ELEMENTS = [
    ("H", "hydrogen", 1, None), ("He", "helium", 2, None), ("Li", "lithium", 3, None),
    ("Be", "beryllium", 4, None), ("B", "boron", 5, None), ("C", "carbon", 6, None),
    ("N", "nitrogen", 7, None), ("O", "oxygen", 8, None), ("F", "fluorine", 9, None),
    ("Ne", "neon", 10, None), ("Na", "sodium", 11, "the Latin name natrium"),
    ("Mg", "magnesium", 12, None), ("Al", "aluminium", 13, None), ("Si", "silicon", 14, None),
    ("P", "phosphorus", 15, None), ("S", "sulfur", 16, None), ("Cl", "chlorine", 17, None),
    ("Ar", "argon", 18, None), ("K", "potassium", 19, "the Latin name kalium"),
    ("Ca", "calcium", 20, None), ("Ti", "titanium", 22, None), ("Cr", "chromium", 24, None),
    ("Mn", "manganese", 25, None), ("Fe", "iron", 26, "the Latin name ferrum"),
    ("Co", "cobalt", 27, None), ("Ni", "nickel", 28, None), ("Cu", "copper", 29, "the Latin name cuprum"),
    ("Zn", "zinc", 30, None), ("Ag", "silver", 47, "the Latin name argentum"),
    ("Sn", "tin", 50, "the Latin name stannum"), ("I", "iodine", 53, None),
    ("W", "tungsten", 74, "its other name, wolfram"), ("Pt", "platinum", 78, None),
    ("Au", "gold", 79, "the Latin name aurum"), ("Hg", "mercury", 80, "the Latin name hydrargyrum"),
    ("Pb", "lead", 82, "the Latin name plumbum"), ("U", "uranium", 92, None),
]

OPPOSITES = [
    ("hot", "cold"), ("fast", "slow"), ("dark", "light"), ("early", "late"), ("full", "empty"),
    ("soft", "hard"), ("rich", "poor"), ("wet", "dry"), ("tall", "short"), ("thick", "thin"),
    ("loud", "quiet"), ("strong", "weak"), ("heavy", "light"), ("push", "pull"), ("inside", "outside"),
    ("above", "below"), ("buy", "sell"), ("true", "false"), ("day", "night"), ("clean", "dirty"),
    ("cheap", "expensive"), ("north", "south"), ("east", "west"), ("friend", "enemy"), ("love", "hate"),
    ("remember", "forget"), ("asleep", "awake"), ("up", "down"), ("open", "closed"), ("win", "lose"),
    ("first", "last"), ("always", "never"), ("increase", "decrease"), ("top", "bottom"),
    ("front", "back"), ("alive", "dead"), ("entrance", "exit"), ("float", "sink"),
    ("success", "failure"), ("before", "after"), ("happy", "sad"), ("minimum", "maximum"),
    ("arrival", "departure"), ("ancient", "modern"),
]

# (singular, plural, rule sentence)
R_IRREG = "'{s}' has an irregular plural, '{p}'."
R_ES = "Nouns ending in s, x, ch or sh add -es, so '{s}' becomes '{p}'."
R_IES = "A consonant followed by y changes to -ies, so '{s}' becomes '{p}'."
R_YS = "A vowel followed by y just adds -s, so '{s}' becomes '{p}'."
R_VES = "Many nouns ending in f or fe change to -ves, so '{s}' becomes '{p}'."
R_SAME = "'{s}' is the same in the singular and the plural."
R_OES = "Some nouns ending in o add -es, so '{s}' becomes '{p}'."
R_IS = "Nouns ending in -is change to -es, so '{s}' becomes '{p}'."
R_ON = "Some Greek nouns ending in -on change to -a, so '{s}' becomes '{p}'."
PLURALS = [
    ("child", "children", R_IRREG), ("mouse", "mice", R_IRREG), ("man", "men", R_IRREG),
    ("woman", "women", R_IRREG), ("tooth", "teeth", R_IRREG), ("foot", "feet", R_IRREG),
    ("goose", "geese", R_IRREG), ("person", "people", R_IRREG), ("ox", "oxen", R_IRREG),
    ("louse", "lice", R_IRREG), ("sheep", "sheep", R_SAME), ("deer", "deer", R_SAME),
    ("box", "boxes", R_ES), ("bus", "buses", R_ES), ("dish", "dishes", R_ES),
    ("church", "churches", R_ES), ("glass", "glasses", R_ES), ("fox", "foxes", R_ES),
    ("watch", "watches", R_ES), ("baby", "babies", R_IES), ("city", "cities", R_IES),
    ("story", "stories", R_IES), ("party", "parties", R_IES), ("key", "keys", R_YS),
    ("toy", "toys", R_YS), ("knife", "knives", R_VES), ("leaf", "leaves", R_VES),
    ("wolf", "wolves", R_VES), ("half", "halves", R_VES), ("wife", "wives", R_VES),
    ("shelf", "shelves", R_VES), ("loaf", "loaves", R_VES), ("potato", "potatoes", R_OES),
    ("tomato", "tomatoes", R_OES), ("hero", "heroes", R_OES), ("crisis", "crises", R_IS),
    ("analysis", "analyses", R_IS), ("phenomenon", "phenomena", R_ON), ("criterion", "criteria", R_ON),
]

# (animal, answer, why)
ANIMAL_SOUNDS = [
    ("dog", "Bark (woof)", "Dogs bark, which is often written as 'woof'."),
    ("cat", "Meow", "Cats meow, especially when they want attention."),
    ("cow", "Moo", "Cows make a low call that sounds like 'moo'."),
    ("sheep", "Baa", "Sheep bleat, which sounds like 'baa'."),
    ("horse", "Neigh", "Horses neigh or whinny."),
    ("pig", "Oink", "Pigs grunt, which is usually written as 'oink'."),
    ("duck", "Quack", "Ducks quack."),
    ("lion", "Roar", "Lions roar, and the sound can carry for kilometres."),
    ("owl", "Hoot", "Many owls hoot, especially at night."),
    ("snake", "Hiss", "Snakes hiss by pushing air out quickly."),
    ("frog", "Croak", "Frogs croak, mostly to attract mates."),
    ("bee", "Buzz", "Bees buzz because their wings beat very fast."),
    ("donkey", "Bray (hee-haw)", "Donkeys bray, which sounds like 'hee-haw'."),
    ("wolf", "Howl", "Wolves howl to communicate with their pack."),
    ("rooster", "Cock-a-doodle-doo", "Roosters crow, which is written as 'cock-a-doodle-doo'."),
    ("mouse", "Squeak", "Mice make high-pitched squeaks."),
    ("elephant", "Trumpet", "Elephants trumpet by blowing air through their trunks."),
]

# (animal, young, why)
ANIMAL_YOUNG = [
    ("dog", "Puppy", "A young dog is called a puppy."),
    ("cat", "Kitten", "A young cat is called a kitten."),
    ("cow", "Calf", "A young cow is called a calf."),
    ("sheep", "Lamb", "A young sheep is called a lamb."),
    ("horse", "Foal", "A young horse is called a foal."),
    ("pig", "Piglet", "A young pig is called a piglet."),
    ("duck", "Duckling", "A young duck is called a duckling."),
    ("lion", "Cub", "A young lion is called a cub."),
    ("frog", "Tadpole", "A frog starts life as a tadpole that lives in water."),
    ("kangaroo", "Joey", "A baby kangaroo is a joey and grows in its mother's pouch."),
    ("goat", "Kid", "A young goat is called a kid."),
    ("deer", "Fawn", "A young deer is called a fawn."),
    ("swan", "Cygnet", "A young swan is called a cygnet."),
    ("owl", "Owlet", "A young owl is called an owlet."),
    ("goose", "Gosling", "A young goose is called a gosling."),
    ("bear", "Cub", "A young bear is called a cub."),
    ("chicken", "Chick", "A young chicken is called a chick."),
    ("butterfly", "Caterpillar", "A butterfly hatches as a caterpillar before it forms a chrysalis."),
    ("eagle", "Eaglet", "A young eagle is called an eaglet."),
    ("seal", "Pup", "A young seal is called a pup."),
    ("elephant", "Calf", "A young elephant is called a calf."),
]

PLANETS = ["Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune"]

# (key, [question phrasings], answer, why)
PLANET_FACTS = [
    ("largest", ["Which planet is the largest in the Solar System?", "What is the biggest planet?",
                 "Name the largest planet in our Solar System.", "Which planet is the biggest one orbiting the Sun?",
                 "What is the largest planet orbiting the Sun?"],
     "Jupiter", "Jupiter is more than ten times wider than Earth."),
    ("smallest", ["Which planet is the smallest in the Solar System?", "What is the smallest planet?",
                  "Name the smallest planet in our Solar System.", "Which of the eight planets is the smallest?",
                  "What is the tiniest planet orbiting the Sun?"],
     "Mercury", "Mercury is only about 40% wider than Earth's Moon."),
    ("hottest", ["Which planet is the hottest?", "What is the hottest planet in the Solar System?",
                 "Name the planet with the highest surface temperature.", "Which planet has the hottest surface?",
                 "Which planet is hotter than all the others?"],
     "Venus", "Its thick carbon dioxide atmosphere traps heat."),
    ("red", ["Which planet is called the Red Planet?", "What is known as the Red Planet?",
             "Name the planet nicknamed the Red Planet.", "Which planet looks red in the sky?",
             "What planet gets its colour from rusty dust?"],
     "Mars", "Iron oxide dust on its surface makes Mars look red."),
    ("rings", ["Which planet is famous for its bright rings?", "What planet has the most famous rings?",
               "Name the planet best known for its ring system.", "Which planet has large, easily seen rings?",
               "Which ringed planet is sixth from the Sun?"],
     "Saturn", "Saturn's rings are made of ice and rock and are easy to see with a telescope."),
    ("count", ["How many planets are in the Solar System?", "How many planets orbit the Sun?",
               "What is the number of planets in our Solar System?", "Count the planets in the Solar System.",
               "How many planets does our Solar System have?"],
     "8", "Since 2006 Pluto has been classed as a dwarf planet, leaving eight planets."),
    ("farthest", ["Which planet is farthest from the Sun?", "What is the outermost planet?",
                  "Name the planet that orbits farthest from the Sun.", "Which planet is the most distant from the Sun?",
                  "What is the last planet in the Solar System?"],
     "Neptune", "Neptune is the eighth and outermost planet."),
    ("closest", ["Which planet is closest to the Sun?", "What is the innermost planet?",
                 "Name the planet nearest to the Sun.", "Which planet orbits nearest the Sun?",
                 "What is the first planet from the Sun?"],
     "Mercury", "Mercury is the first planet from the Sun."),
    ("marsmoons", ["How many moons does Mars have?", "What is the number of moons of Mars?",
                   "How many natural satellites orbit Mars?", "Count the moons of Mars.",
                   "How many moons circle Mars?"],
     "2", "Mars has two small moons, Phobos and Deimos."),
    ("earthmoons", ["How many moons does Earth have?", "What is the number of moons of Earth?",
                    "How many natural satellites does Earth have?", "Count the moons of our planet.",
                    "How many moons orbit the Earth?"],
     "1", "Earth has a single natural satellite, the Moon."),
    ("sideways", ["Which planet spins on its side?", "What planet is tilted almost sideways?",
                  "Name the planet whose axis is tipped over on its side.", "Which planet rolls around the Sun on its side?",
                  "Which planet has an axial tilt of about 98 degrees?"],
     "Uranus", "Uranus's axis is tilted by about 98 degrees."),
    ("redspot", ["Which planet has the Great Red Spot?", "On what planet is the Great Red Spot found?",
                 "Name the planet with a giant storm called the Great Red Spot.", "Where is the Great Red Spot?",
                 "The Great Red Spot is a storm on which planet?"],
     "Jupiter", "The Great Red Spot is a huge storm in Jupiter's atmosphere."),
    ("home", ["Which planet do humans live on?", "What planet is our home?",
              "Name the planet we live on.", "On which planet do people live?",
              "What is the third planet, where humans live?"],
     "Earth", "Earth is the only planet known to support life."),
]

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
MONTH_DAYS = [31, None, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]

# (key, unit_from, unit_to, factor, plural_from, plural_to, range)
UNITS = [
    ("km_m", "kilometre", "metre", 1000, "kilometres", "metres", range(2, 16)),
    ("h_min", "hour", "minute", 60, "hours", "minutes", range(2, 13)),
    ("min_s", "minute", "second", 60, "minutes", "seconds", range(2, 13)),
    ("m_cm", "metre", "centimetre", 100, "metres", "centimetres", range(2, 16)),
    ("kg_g", "kilogram", "gram", 1000, "kilograms", "grams", range(2, 13)),
    ("d_h", "day", "hour", 24, "days", "hours", range(2, 8)),
    ("w_d", "week", "day", 7, "weeks", "days", range(2, 11)),
    ("l_ml", "litre", "millilitre", 1000, "litres", "millilitres", range(2, 11)),
    ("y_mo", "year", "month", 12, "years", "months", range(2, 11)),
    ("cm_mm", "centimetre", "millimetre", 10, "centimetres", "millimetres", range(2, 16)),
]


# ----------------------------------------------------------------------------------------
# Fact -> candidate examples. Each fact: (category, key, [(question, answer, why), ...])
# ----------------------------------------------------------------------------------------
def build_facts():
    facts = []

    for country, city in CAPITALS:
        c_cap = country[0].upper() + country[1:]
        qs = [
            "What is the capital of %s?" % country,
            "Which city is the capital of %s?" % country,
            "Name the capital city of %s." % country,
            "What city serves as the capital of %s?" % country,
            "Tell me the capital of %s." % country,
            "%s has which city as its capital?" % c_cap,
        ]
        whys = ["%s is the capital city of %s." % (city, country),
                "The national government of %s is based in %s." % (country, city)]
        facts.append(("capital", "capital:" + country.replace("the ", ""),
                      [(q, city, whys[i % 2]) for i, q in enumerate(qs)]))

    for sym, name, z, origin in ELEMENTS:
        why = ("The symbol %s comes from %s." % (sym, origin)) if origin else \
              ("%s has the symbol %s and atomic number %d." % (name.capitalize(), sym, z))
        ex = [
            ("What is the chemical symbol for %s?" % name, sym, why),
            ("Which symbol stands for %s on the periodic table?" % name, sym, why),
            ("Give the element symbol of %s." % name, sym, why),
            ("Which element has the symbol %s?" % sym, name.capitalize(), why),
            ("What element does the symbol '%s' represent?" % sym, name.capitalize(), why),
            ("Name the element with chemical symbol %s." % sym, name.capitalize(), why),
            ("What is the atomic number of %s?" % name, str(z),
             "%s has %d protons in its nucleus." % (name.capitalize(), z)),
        ]
        facts.append(("element", "elem:" + sym, ex))

    # Arithmetic: each unordered pair is one fact.
    seen = set()
    for a in range(2, 13):
        for b in range(2, 13):
            k = (min(a, b), max(a, b))
            if k in seen:
                continue
            seen.add(k)
            p = a * b
            facts.append(("arith", "mul:%dx%d" % k, [
                ("What is %d times %d?" % (a, b), str(p), "%d multiplied by %d equals %d." % (a, b, p)),
                ("What is %d × %d?" % (a, b), str(p), "%d groups of %d make %d." % (a, b, p)),
                ("Multiply %d by %d." % (a, b), str(p), "%d multiplied by %d equals %d." % (a, b, p)),
                ("What is the product of %d and %d?" % (a, b), str(p), "%d × %d = %d." % (a, b, p)),
                ("Calculate %d * %d." % (a, b), str(p), "%d groups of %d make %d." % (a, b, p)),
            ]))
    for a in range(3, 51, 3):
        for b in range(4, 51, 5):
            s = a + b
            facts.append(("arith", "add:%d+%d" % (min(a, b), max(a, b)), [
                ("What is %d + %d?" % (a, b), str(s), "%d plus %d equals %d." % (a, b, s)),
                ("What is %d plus %d?" % (a, b), str(s), "%d plus %d equals %d." % (a, b, s)),
                ("Add %d and %d." % (a, b), str(s), "Adding %d to %d gives %d." % (b, a, s)),
                ("What is the sum of %d and %d?" % (a, b), str(s), "%d + %d = %d." % (a, b, s)),
                ("Calculate %d + %d." % (a, b), str(s), "Adding %d to %d gives %d." % (b, a, s)),
                ("If you have %d apples and get %d more, how many apples do you have?" % (a, b), str(s),
                 "%d plus %d equals %d." % (a, b, s)),
            ]))
            if a > b:
                d = a - b
                facts.append(("arith", "sub:%d-%d" % (a, b), [
                    ("What is %d - %d?" % (a, b), str(d), "%d minus %d equals %d." % (a, b, d)),
                    ("What is %d minus %d?" % (a, b), str(d), "%d minus %d equals %d." % (a, b, d)),
                    ("Subtract %d from %d." % (b, a), str(d), "Taking %d away from %d leaves %d." % (b, a, d)),
                    ("What is the difference between %d and %d?" % (a, b), str(d), "%d - %d = %d." % (a, b, d)),
                    ("Calculate %d - %d." % (a, b), str(d), "Taking %d away from %d leaves %d." % (b, a, d)),
                ]))

    for w, o in OPPOSITES:
        whys = ["'%s' and '%s' have opposite meanings." % (w, o), "'%s' is the antonym of '%s'." % (o, w)]
        qs = [
            "What is the opposite of '%s'?" % w,
            "Give me the antonym of '%s'." % w,
            "What word means the opposite of '%s'?" % w,
            "Which word is the opposite of '%s'?" % w,
            "Name an antonym for '%s'." % w,
            "What is the antonym of the word '%s'?" % w,
        ]
        facts.append(("opposite", "opp:" + w, [(q, o, whys[i % 2]) for i, q in enumerate(qs)]))

    for s, p, rule in PLURALS:
        why = rule.format(s=s, p=p)
        qs = [
            "What is the plural of '%s'?" % s,
            "How do you write '%s' in the plural?" % s,
            "What is the plural form of the word '%s'?" % s,
            "Give the plural of '%s'." % s,
            "One %s, two ... what?" % s,
            "If there is more than one %s, what do you call them?" % s,
        ]
        facts.append(("plural", "plural:" + s, [(q, p, why) for q in qs]))

    for animal, ans, why in ANIMAL_SOUNDS:
        art = "an" if animal[0] in "aeiou" else "a"
        qs = [
            "What sound does %s %s make?" % (art, animal),
            "What noise does %s %s make?" % (art, animal),
            "How does %s %s sound?" % (art, animal),
            "What is the sound %s %s makes called?" % (art, animal),
            "Which sound do you hear from %s %s?" % (art, animal),
        ]
        facts.append(("animal", "sound:" + animal, [(q, ans, why) for q in qs]))
    for animal, ans, why in ANIMAL_YOUNG:
        art = "an" if animal[0] in "aeiou" else "a"
        qs = [
            "What is a baby %s called?" % animal,
            "What do you call a young %s?" % animal,
            "What is the name for a baby %s?" % animal,
            "A young %s is called what?" % animal,
            "What word is used for %s %s's young?" % (art, animal),
        ]
        facts.append(("animal", "young:" + animal, [(q, ans, why) for q in qs]))

    for i, planet in enumerate(PLANETS):
        n = i + 1
        ex = [
            ("Which planet is %s from the Sun?" % ordinal(n), planet,
             "The order is Mercury, Venus, Earth, Mars, Jupiter, Saturn, Uranus, Neptune."),
            ("What is the %s planet from the Sun?" % ordinal(n), planet,
             "%s is planet number %d counting outward from the Sun." % (planet, n)),
            ("Name the %s planet counting from the Sun." % ordinal(n), planet,
             "The order is Mercury, Venus, Earth, Mars, Jupiter, Saturn, Uranus, Neptune."),
            ("What position is %s from the Sun?" % planet, ordinal(n),
             "%s is planet number %d counting outward from the Sun." % (planet, n)),
            ("Counting from the Sun, which number planet is %s?" % planet, ordinal(n),
             "The order is Mercury, Venus, Earth, Mars, Jupiter, Saturn, Uranus, Neptune."),
        ]
        facts.append(("planet", "planetpos:" + planet, ex))
    for key, qs, ans, why in PLANET_FACTS:
        facts.append(("planet", "planet:" + key, [(q, ans, why) for q in qs]))

    for key, uf, ut, f, pf, pt, rng in UNITS:
        for n in rng:
            r = n * f
            why = "1 %s is %s %s, so %d × %s = %s." % (uf, fmt_int(f), pt, n, fmt_int(f), fmt_int(r))
            ans = "%s %s" % (fmt_int(r), pt)
            qs = [
                "How many %s are in %d %s?" % (pt, n, pf),
                "Convert %d %s to %s." % (n, pf, pt),
                "What is %d %s in %s?" % (n, pf, pt),
                "%d %s equals how many %s?" % (n, pf, pt),
                "Express %d %s in %s." % (n, pf, pt),
            ]
            facts.append(("unit", "unit:%s:%d" % (key, n), [(q, ans, why) for q in qs]))

    for i, d in enumerate(DAYS):
        nxt, prv = DAYS[(i + 1) % 7], DAYS[(i - 1) % 7]
        facts.append(("calendar", "dayafter:" + d, [
            ("What day comes after %s?" % d, nxt, "%s always follows %s in the week." % (nxt, d)),
            ("Which day follows %s?" % d, nxt, "%s always follows %s in the week." % (nxt, d)),
            ("If today is %s, what day is tomorrow?" % d, nxt, "The day after %s is %s." % (d, nxt)),
            ("What is the day after %s?" % d, nxt, "The day after %s is %s." % (d, nxt)),
            ("Name the day of the week right after %s." % d, nxt, "%s always follows %s in the week." % (nxt, d)),
        ]))
        facts.append(("calendar", "daybefore:" + d, [
            ("What day comes before %s?" % d, prv, "%s comes just before %s in the week." % (prv, d)),
            ("Which day is just before %s?" % d, prv, "%s comes just before %s in the week." % (prv, d)),
            ("If today is %s, what day was yesterday?" % d, prv, "The day before %s is %s." % (d, prv)),
            ("What is the day before %s?" % d, prv, "The day before %s is %s." % (d, prv)),
            ("Name the day of the week right before %s." % d, prv, "%s comes just before %s in the week." % (prv, d)),
        ]))
    for i, m in enumerate(MONTHS):
        n = i + 1
        nxt, prv = MONTHS[(i + 1) % 12], MONTHS[(i - 1) % 12]
        facts.append(("calendar", "monthafter:" + m, [
            ("What month comes after %s?" % m, nxt, "%s follows %s in the calendar." % (nxt, m)),
            ("Which month follows %s?" % m, nxt, "%s follows %s in the calendar." % (nxt, m)),
            ("What is the month after %s?" % m, nxt, "%s follows %s in the calendar." % (nxt, m)),
            ("Name the month right after %s." % m, nxt, "%s follows %s in the calendar." % (nxt, m)),
            ("When %s ends, which month begins?" % m, nxt, "%s follows %s in the calendar." % (nxt, m)),
        ]))
        facts.append(("calendar", "monthnum:" + m, [
            ("What is the %s month of the year?" % ordinal(n), m, "%s is month number %d." % (m, n)),
            ("Which month is the %s month of the year?" % ordinal(n), m, "%s is month number %d." % (m, n)),
            ("Name the %s month of the calendar year." % ordinal(n), m, "%s is month number %d." % (m, n)),
            ("What number month is %s?" % m, str(n), "%s is the %s month of the year." % (m, ordinal(n))),
            ("In which position of the year is %s?" % m, ordinal(n), "%s is the %s month of the year." % (m, ordinal(n))),
        ]))
        if MONTH_DAYS[i] is None:
            ans, why = "28 (29 in a leap year)", "February has 28 days, or 29 in a leap year."
        else:
            ans, why = str(MONTH_DAYS[i]), "%s always has %d days." % (m, MONTH_DAYS[i])
        facts.append(("calendar", "monthdays:" + m, [
            ("How many days are in %s?" % m, ans, why),
            ("How many days does %s have?" % m, ans, why),
            ("What is the number of days in %s?" % m, ans, why),
            ("How long is %s in days?" % m, ans, why),
            ("Count the days in the month of %s." % m, ans, why),
        ]))
    return [f for f in facts if f[1] not in EXCLUDED_KEYS]


TRAIN_QUOTA = {"capital": 70, "element": 45, "arith": 60, "opposite": 45, "plural": 40,
               "animal": 45, "planet": 30, "unit": 40, "calendar": 25}
VALID_QUOTA = {"capital": 10, "element": 7, "arith": 9, "opposite": 7, "plural": 6,
               "animal": 7, "planet": 4, "unit": 6, "calendar": 4}


def sample(facts, quota, rng):
    """Draw `quota` examples from a category's facts: cycle over the facts (shuffled),
    each time taking an unused phrasing, so every fact is used before any repeats."""
    order = facts[:]
    rng.shuffle(order)
    pools = {f[1]: rng.sample(f[2], len(f[2])) for f in order}
    out = []
    while len(out) < quota:
        progressed = False
        for f in order:
            if len(out) >= quota:
                break
            if pools[f[1]]:
                out.append((f[1],) + pools[f[1]].pop())
                progressed = True
        if not progressed:
            raise SystemExit("not enough examples for quota %d" % quota)
    return out


def to_record(q, a, why):
    assert "\n" not in a and "\n" not in why
    return {"messages": [{"role": "user", "content": q},
                         {"role": "assistant", "content": "ANSWER: %s\nWHY: %s" % (a, why)}]}


def main():
    rng = random.Random(SEED)
    facts = build_facts()
    by_cat = {}
    for f in facts:
        by_cat.setdefault(f[0], []).append(f)

    train, valid = [], []
    for cat in sorted(TRAIN_QUOTA):
        fs = sorted(by_cat[cat], key=lambda f: f[1])
        rng.shuffle(fs)
        # Reserve enough facts for validation: one example (phrasing) per validation fact.
        nv = VALID_QUOTA[cat]
        v_facts, t_facts = fs[:nv], fs[nv:]
        valid += sample(v_facts, nv, rng)
        train += sample(t_facts, TRAIN_QUOTA[cat], rng)
    rng.shuffle(train)
    rng.shuffle(valid)
    assert len(train) == N_TRAIN and len(valid) == N_VALID

    tk, vk = {x[0] for x in train}, {x[0] for x in valid}
    assert not (tk & vk), "fact leak between train and valid"
    tq, vq = {x[1] for x in train}, {x[1] for x in valid}
    assert len(tq) == len(train) and len(vq) == len(valid) and not (tq & vq)
    assert not (set(PROMPTS) & (tq | vq))

    for name, rows in (("train.jsonl", train), ("valid.jsonl", valid)):
        with open(os.path.join(HERE, name), "w", encoding="utf-8") as fh:
            for _, q, a, why in rows:
                fh.write(json.dumps(to_record(q, a, why), ensure_ascii=False) + "\n")
    with open(os.path.join(HERE, "prompts.txt"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(PROMPTS) + "\n")

    cat_of = {f[1]: f[0] for f in facts}
    for name, rows in (("train", train), ("valid", valid)):
        counts = {}
        for k, *_ in rows:
            counts[cat_of[k]] = counts.get(cat_of[k], 0) + 1
        print("  %s by category: %s" % (name, ", ".join("%s=%d" % kv for kv in sorted(counts.items()))))
    print("facts available: %d" % len(facts))
    print("train: %d examples over %d facts" % (len(train), len(tk)))
    print("valid: %d examples over %d facts (disjoint from train)" % (len(valid), len(vk)))
    print("prompts.txt: %d held-out questions" % len(PROMPTS))


if __name__ == "__main__":
    main()
