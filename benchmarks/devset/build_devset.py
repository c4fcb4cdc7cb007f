#!/usr/bin/env python
"""Builds the development benchmark: synthetic scenes, written up as COCO-style captions and VQAv2 questions.

    python benchmarks/devset/build_devset.py [OUT_DIR]     # default: this folder

Writes questions.json and annotations.json (official VQAv2 formats), captions.json ({image_id: [captions]}) and
categories.json ({question_id: category}). Standard library only and seeded: a rerun writes the same bytes.
Each scene is a small structured spec; captions and questions are both written from it, so every fact a
question asks about is stated in a caption, and the build checks that before writing anything.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEED = 20240611
FIRST_IMAGE_ID = 900001  # far above COCO's image ids, so no one takes these for COCO images
SCENES_PER_THEME = 5
QUESTIONS_PER_SCENE = 5
# Questions per category over the 75 scenes (375 in all); yes/no is split into two slots so a scene can hold two.
QUOTAS = {
    "yesno#1": 45, "yesno#2": 45, "yesno_negation": 30, "count": 54, "color": 54,
    "object": 51, "activity": 48, "location": 48,
}
ANSWER_TYPES = {"yesno": "yes/no", "yesno_negation": "yes/no", "count": "number"}  # the rest: "other"
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight"]
COUNT_WEIGHTS = {1: 1, 2: 5, 3: 5, 4: 3, 5: 2, 6: 1}
WHO = ("man", "woman", "boy", "girl")
ADULTS = ("man", "woman")
ALIASES = {
    "man": ("a man", "a guy", "a person", "someone", "a young man"),
    "woman": ("a woman", "a lady", "a person", "someone", "a young woman"),
    "boy": ("a boy", "a young boy", "a kid", "a child"),
    "girl": ("a girl", "a little girl", "a young girl", "a kid"),
}
COLORS = ("red", "blue", "green", "yellow", "white", "black", "brown", "gray", "orange", "pink", "purple", "silver")
CLOTHING_COLORS = ("red", "blue", "green", "yellow", "white", "black", "gray", "orange", "pink", "purple")
# Answers people give for the same color, and the near misses a few of them make.
COLOR_VARIANTS = {
    "gray": ("grey",), "red": ("dark red",), "blue": ("dark blue", "light blue"), "green": ("dark green",),
    "brown": ("tan", "light brown"), "pink": ("light pink",), "purple": ("violet",), "silver": ("gray", "grey"),
}
COLOR_NEAR = {
    "red": ("orange", "pink"), "blue": ("green", "purple"), "green": ("blue",), "yellow": ("orange",),
    "white": ("gray", "silver"), "black": ("gray", "brown"), "brown": ("black",), "gray": ("white", "silver"),
    "orange": ("red", "yellow"), "pink": ("red", "purple"), "purple": ("pink", "blue"), "silver": ("white",),
}
POSE_VARIANTS = {
    "sitting": ("resting", "sitting down"), "laying": ("laying down", "resting", "lying down"),
    "sleeping": ("resting", "napping", "laying"), "standing": ("looking", "waiting"),
}
IRREGULAR_PLURALS = {"sheep": "sheep", "snowman": "snowmen", "bus": "buses", "person": "people"}
# How many of the ten people give the canonical answer; the rest give variants or, rarely, a wrong answer.
AGREEMENT = {
    "yesno": (10, 10, 10, 9, 9, 8), "yesno_negation": (9, 8, 8, 7, 7, 6), "count": (10, 9, 8, 8, 7, 7, 6),
    "color": (10, 9, 8, 8, 7, 6), "object": (9, 8, 7, 7, 6, 6), "activity": (9, 8, 7, 7, 6, 6),
    "location": (9, 8, 7, 7, 6, 6),
}
# Official VQA question-type prefixes used by these questions; the longest match wins, as in the official list.
QUESTION_TYPES = (
    "are the", "are there", "are there any", "how many", "is the", "is the man", "is the person", "is the woman",
    "is there", "is there a", "is this", "is this a", "is this an", "what", "what animal is", "what color are the",
    "what color is the", "what is", "what is the", "what is the man", "what is the person", "what is the woman",
    "what kind of", "what room is", "what sport is", "where are the", "where is the", "none of the above",
)


@dataclass(frozen=True)
class Activity:
    answer: str  # canonical answer to "What is the man doing?"; the caption phrase states it word for word
    question: str  # as asked in yes/no questions: "Is the man {question}?"
    caption: str  # caption phrase stating the activity; {obj} becomes "a kite"
    alt_caption: str  # another phrasing for another caption; it names obj where caption does not
    alternatives: tuple[str, ...] = ()
    obj: str | None = None  # asked as "What is the man {verb}?"
    verb: str = "holding"
    obj_alternatives: tuple[str, ...] = ()
    obj_phrase: str | None = None  # how captions name obj, where "a/an obj" does not fit
    sport: str | None = None  # asked as "What sport is the man playing?"
    who: tuple[str, ...] = WHO
    nouns: tuple[str, ...] = ()  # other things the phrases name, kept apart from the scene's objects


@dataclass(frozen=True)
class Group:  # several of a kind: counted, and asked where they are
    noun: str
    plural: str
    colors: tuple[str, ...]
    where: str
    loc: str
    loc_alternatives: tuple[str, ...] = ()


@dataclass(frozen=True)
class Single:  # one colored object
    noun: str
    colors: tuple[str, ...]
    where: str


@dataclass(frozen=True)
class Located:  # an animal or thing somewhere: "a cat sleeping on the couch"
    noun: str
    animal: bool
    colors: tuple[str, ...]
    locs: tuple[tuple[str, str, tuple[str, ...]], ...]  # (preposition, place, other answers for it)
    poses: tuple[str, ...] = ("sitting", "laying", "sleeping")


@dataclass(frozen=True)
class Theme:
    place: str
    place_alternatives: tuple[str, ...]
    place_captions: tuple[str, ...]
    intros: tuple[str, ...]
    room: bool  # asked "What room is this?"
    clothing: tuple[str, ...]
    activities: tuple[Activity, ...]
    groups: tuple[Group, ...]
    singles: tuple[Single, ...]
    located: tuple[Located, ...]
    absent: tuple[str, ...]  # plausible here, never in this theme's captions


PHONE = Activity("talking on phone", "talking on the phone", "talking on {obj}", "holding {obj}",
                 ("on phone", "talking"), "phone", obj_alternatives=("cell phone", "cellphone"))
PICTURE = Activity("taking picture", "taking a picture", "taking a picture with {obj}", "holding {obj}",
                   ("taking photo", "taking pictures", "photographing"), "camera")
KITE = Activity("flying kite", "flying a kite", "flying {obj}", "with {obj}", ("kite flying", "flying a kite"),
                "kite", verb="flying")
FRISBEE = Activity("playing frisbee", "playing frisbee", "playing frisbee", "throwing {obj}",
                   ("frisbee", "throwing frisbee"), "frisbee", verb="throwing", obj_alternatives=("disc",),
                   sport="frisbee")
BIKE = Activity("riding bike", "riding a bike", "riding {obj}", "on {obj}", ("biking", "cycling", "riding bicycle"),
                "bike", verb="riding", obj_alternatives=("bicycle",))
READING = Activity("reading", "reading a book", "reading {obj}", "with {obj}", ("reading book", "relaxing"), "book",
                   verb="reading")
COFFEE = Activity("drinking coffee", "drinking coffee", "drinking coffee from {obj}", "holding {obj}",
                  ("drinking",), "mug", obj_alternatives=("cup", "coffee mug"), who=ADULTS)
def dog(*locs: tuple[str, str, tuple[str, ...]]) -> Located:
    """Dogs turn up in many themes, each with its own places."""
    return Located("dog", True, ("black", "brown", "white"), locs)


THEMES = (
    Theme(
        "beach", ("ocean", "shore", "at beach"), ("at the beach", "on the beach", "on a sandy beach"),
        ("a sunny beach", "a wide sandy beach", "a beach on a clear day"), False, ("shirt", "hat"),
        (
            Activity("surfing", "surfing", "surfing on {obj}", "riding a wave on {obj}", ("surf", "riding wave"),
                     "surfboard", verb="riding", obj_alternatives=("surf board", "board")),
            KITE, FRISBEE,
            Activity("playing volleyball", "playing volleyball", "playing volleyball", "hitting {obj}",
                     ("volleyball",), "ball", verb="hitting", obj_alternatives=("volleyball",), sport="volleyball"),
            Activity("walking", "walking", "walking with {obj}", "carrying {obj}", ("strolling",), "towel",
                     verb="carrying"),
        ),
        (
            Group("umbrella", "umbrellas", ("blue", "red", "yellow", "white"), "on the sand", "sand",
                  ("on sand", "beach")),
            Group("chair", "chairs", ("white", "blue", "green"), "lined up on the sand", "sand", ("on sand", "beach")),
            Group("boat", "boats", ("white", "red", "blue"), "in the water", "water", ("ocean", "in water")),
        ),
        (Single("cooler", ("red", "blue", "white"), "on the sand"),
         Single("bucket", ("yellow", "red", "blue"), "near the water"),
         Single("lifeguard tower", ("red", "yellow", "white"), "near the water")),
        (dog(("on", "towel", ("on towel", "blanket")), ("by", "rock", ("rock", "on rock"))),
         Located("seagull", True, ("white", "gray"), (("on", "rock", ("on rock", "rocks")),
                                                      ("on", "post", ("on post", "pole"))), ("standing", "sitting"))),
        ("horse", "bicycle", "car", "cat", "bus"),
    ),
    Theme(
        "street", ("city", "road", "on street", "downtown"), ("on a city street", "on the street", "on a busy street"),
        ("a busy city street", "a city street", "a quiet street"), False, ("shirt", "jacket", "hat"),
        (
            BIKE,
            Activity("skateboarding", "skateboarding", "skateboarding", "riding {obj}", ("skating", "riding skateboard"),
                     "skateboard", verb="riding", obj_alternatives=("skate board", "board")),
            PHONE,
            Activity("walking", "walking", "walking with {obj}", "holding {obj}", ("strolling", "walking in rain"),
                     "umbrella"),
            Activity("eating", "eating", "eating {obj}", "holding {obj}", ("eating hot dog", "snacking"), "hot dog",
                     verb="eating", obj_alternatives=("hotdog", "food")),
        ),
        (
            Group("car", "cars", ("red", "blue", "white", "black", "silver"), "parked along the street", "street",
                  ("on street", "road", "parked")),
            Group("motorcycle", "motorcycles", ("black", "red"), "parked on the sidewalk", "sidewalk",
                  ("on sidewalk", "street")),
            Group("taxi", "taxis", ("yellow",), "waiting at the corner", "corner", ("street", "at corner")),
            Group("traffic cone", "traffic cones", ("orange",), "in the road", "road", ("street", "in road")),
        ),
        (Single("bus", ("red", "blue", "white", "yellow", "green"), "parked by the curb"),
         Single("fire hydrant", ("red", "yellow"), "on the corner"),
         Single("truck", ("white", "red", "blue"), "stopped at a light")),
        (dog(("on", "sidewalk", ("on sidewalk", "street")), ("on", "bench", ("on bench",)),
             ("on", "steps", ("stairs", "on steps"))),
         Located("pigeon", True, ("gray", "white"), (("on", "bench", ("on bench",)), ("on", "sign", ("on sign", "pole")),
                                                     ("on", "sidewalk", ("on sidewalk", "ground"))),
                 ("standing", "sitting"))),
        ("horse", "cow", "boat", "giraffe", "train"),
    ),
    Theme(
        "kitchen", ("in kitchen", "house", "home"), ("in a kitchen", "in the kitchen", "in a small kitchen"),
        ("a small kitchen", "a clean kitchen", "a bright kitchen"), True, ("apron", "shirt", "sweater"),
        (
            Activity("cooking", "cooking", "cooking with {obj}", "holding {obj}", ("making food", "frying"), "pan",
                     obj_alternatives=("frying pan", "skillet")),
            Activity("cutting vegetables", "cutting vegetables", "cutting vegetables with {obj}", "holding {obj}",
                     ("cutting", "chopping", "cooking"), "knife", nouns=("vegetable",)),
            Activity("washing dishes", "washing dishes", "washing dishes with {obj}", "holding {obj}",
                     ("doing dishes", "cleaning"), "sponge", nouns=("dish",)),
            Activity("eating", "eating", "eating {obj}", "with {obj}", ("eating apple", "snacking"), "apple",
                     verb="eating"),
            COFFEE,
        ),
        (
            Group("banana", "bananas", ("yellow",), "on the counter", "counter", ("on counter",)),
            Group("apple", "apples", ("red", "green"), "in a bowl", "bowl", ("in bowl", "table")),
            Group("cup", "cups", ("white", "blue"), "on the shelf", "shelf", ("on shelf", "cabinet")),
            Group("chair", "chairs", ("white", "black", "brown"), "around the table", "table", ("at table",)),
        ),
        (Single("refrigerator", ("white", "silver", "black"), "in the corner"),
         Single("microwave", ("white", "black", "silver"), "above the stove"),
         Single("kettle", ("red", "silver", "white"), "on the stove")),
        (Located("cat", True, ("black", "white", "gray", "orange"),
                 (("on", "counter", ("on counter",)), ("on", "chair", ("on chair",)), ("on", "floor", ("on floor",)),
                  ("on", "table", ("on table",)))),
         Located("cake", False, (), (("on", "table", ("on table",)), ("on", "counter", ("on counter",))))),
        ("dog", "bicycle", "television", "laptop", "horse"),
    ),
    Theme(
        "living room", ("livingroom", "family room", "den", "lounge"),
        ("in a living room", "in the living room", "in a cozy living room"),
        ("a cozy living room", "a small living room", "a bright living room"), True, ("shirt", "sweater", "hoodie"),
        (
            Activity("watching tv", "watching tv", "watching tv", "holding {obj}", ("watching television", "relaxing"),
                     "remote", obj_alternatives=("remote control", "controller")),
            Activity("playing video games", "playing video games", "playing video games", "holding {obj}",
                     ("playing wii", "gaming", "playing game"), "controller",
                     obj_alternatives=("game controller", "wii remote", "remote")),
            READING,
            Activity("using laptop", "using a laptop", "using {obj}", "with {obj}", ("typing", "working", "on computer"),
                     "laptop", verb="using", obj_alternatives=("computer", "notebook")),
            PHONE,
        ),
        (
            Group("pillow", "pillows", ("white", "red", "blue", "green"), "on the couch", "couch",
                  ("on couch", "sofa")),
            Group("book", "books", ("red", "blue"), "on the shelf", "shelf", ("on shelf", "bookshelf")),
            Group("candle", "candles", ("white", "red"), "on the table", "table", ("on table",)),
        ),
        (Single("rug", ("red", "blue", "gray"), "on the floor"),
         Single("armchair", ("brown", "blue", "green"), "by the window"),
         Single("lamp", ("white", "black"), "in the corner")),
        (Located("cat", True, ("black", "white", "gray", "orange"),
                 (("on", "couch", ("on couch", "sofa", "on sofa")), ("on", "rug", ("on rug", "floor", "carpet")),
                  ("on", "windowsill", ("window", "on windowsill")))),
         dog(("on", "rug", ("on rug", "floor")), ("on", "couch", ("on couch", "sofa")),
             ("on", "floor", ("on floor", "ground")))),
        ("horse", "bicycle", "car", "bird", "refrigerator"),
    ),
    Theme(
        "park", ("outside", "field", "grass"), ("in the park", "in a park", "in a grassy park"),
        ("a green park", "a grassy park", "a city park"), False, ("shirt", "jacket", "hat"),
        (
            FRISBEE, KITE,
            Activity("running", "running", "running", "jogging", ("jogging", "exercising")),
            Activity("playing soccer", "playing soccer", "playing soccer", "kicking {obj}", ("soccer", "kicking ball"),
                     "ball", verb="kicking", obj_alternatives=("soccer ball",), sport="soccer"),
            BIKE,
        ),
        (
            Group("tree", "trees", ("green",), "along the path", "path", ("along path", "sidewalk")),
            Group("duck", "ducks", ("white", "brown"), "in the pond", "pond", ("water", "in pond", "lake")),
            Group("pigeon", "pigeons", ("gray",), "on the grass", "grass", ("on grass", "ground")),
        ),
        (Single("bench", ("green", "brown", "red"), "near the path"),
         Single("trash can", ("green", "black"), "by the path"),
         Single("blanket", ("red", "blue", "yellow"), "on the grass")),
        (dog(("on", "grass", ("on grass", "lawn")), ("on", "bench", ("on bench",)), ("under", "tree", ("tree",))),
         Located("squirrel", True, ("gray", "brown"), (("in", "tree", ("in tree",)), ("on", "fence", ("on fence",)),
                                                       ("on", "bench", ("on bench",))), ("sitting", "standing"))),
        ("car", "bus", "horse", "elephant", "boat"),
    ),
    Theme(
        "ski slope", ("mountain", "slope", "snow", "ski resort"),
        ("on a ski slope", "on the ski slope", "down a snowy ski slope"),
        ("a snowy ski slope", "a steep ski slope", "a ski slope on a clear day"), False, ("jacket", "hat", "helmet"),
        (
            Activity("skiing", "skiing", "skiing", "holding {obj}", ("ski", "going downhill"), "ski poles",
                     obj_alternatives=("poles", "skis"), obj_phrase="ski poles"),
            Activity("snowboarding", "snowboarding", "snowboarding", "riding {obj}", ("snowboard", "riding snowboard"),
                     "snowboard", verb="riding", obj_alternatives=("board",)),
            Activity("sledding", "sledding", "sledding", "riding {obj}", ("sledding down hill", "playing"), "sled",
                     verb="riding", obj_alternatives=("sleigh",)),
            PICTURE,
        ),
        (
            Group("pine tree", "pine trees", ("green",), "along the slope", "slope", ("hill", "mountain")),
            Group("flag", "flags", ("red", "orange", "blue"), "in the snow", "snow", ("in snow", "slope")),
            Group("snowman", "snowmen", (), "at the bottom of the hill", "hill", ("bottom of hill", "snow")),
        ),
        (Single("sign", ("orange", "yellow"), "in the snow"),
         Single("fence", ("orange", "red"), "along the trail"),
         Single("ski lift", ("red", "blue", "yellow"), "in the distance")),
        (dog(("in", "snow", ("in snow", "ground")), ("on", "bench", ("on bench",))),
         Located("backpack", False, ("red", "black", "blue"), (("on", "bench", ("on bench",)),
                                                                ("on", "ground", ("on ground", "snow"))))),
        ("surfboard", "car", "boat", "horse", "umbrella"),
    ),
    Theme(
        "tennis court", ("court", "tennis", "outside"), ("on a tennis court", "on the tennis court"),
        ("a tennis court", "an outdoor tennis court", "a tennis court on a sunny day"), False, ("shirt", "hat", "visor"),
        (
            Activity("playing tennis", "playing tennis", "playing tennis", "swinging {obj}", ("tennis", "swinging racket"),
                     "racket", obj_alternatives=("tennis racket", "racquet"), sport="tennis"),
            Activity("serving", "serving the ball", "serving the ball", "holding {obj}", ("playing tennis", "serving ball"),
                     "racket", obj_alternatives=("tennis racket", "racquet"), sport="tennis"),
        ),
        (
            Group("tennis ball", "tennis balls", ("yellow", "green"), "on the court", "court", ("on court", "ground")),
            Group("chair", "chairs", ("white", "green"), "by the fence", "fence", ("by fence", "sideline")),
            Group("water bottle", "water bottles", ("blue", "red", "white"), "under the bench", "bench",
                  ("under bench",)),
        ),
        (Single("fence", ("green", "black"), "around the court"),
         Single("net", ("white", "black"), "across the court"),
         Single("cooler", ("red", "blue"), "next to the bench")),
        (Located("bag", False, ("black", "red", "blue"), (("on", "bench", ("on bench",)),
                                                          ("on", "ground", ("on ground", "court")))),
         Located("towel", False, ("white", "blue"), (("on", "bench", ("on bench",)), ("on", "chair", ("on chair",)))),
         Located("bird", True, ("black", "brown"), (("on", "fence", ("on fence",)), ("on", "net", ("on net",))),
                 ("standing", "sitting"))),
        ("dog", "car", "horse", "surfboard", "umbrella"),
    ),
    Theme(
        "baseball field", ("field", "ballpark", "stadium", "baseball game"),
        ("on a baseball field", "on the baseball field", "at a baseball field"),
        ("a baseball field", "a baseball field on a sunny day", "a small baseball field"), False,
        ("uniform", "helmet", "cap"),
        (
            Activity("batting", "batting", "batting", "swinging {obj}", ("playing baseball", "swinging bat", "hitting ball"),
                     "bat", obj_alternatives=("baseball bat",), sport="baseball"),
            Activity("pitching", "pitching", "pitching {obj}", "throwing {obj}", ("throwing", "throwing ball"),
                     "baseball", verb="throwing", obj_alternatives=("ball",), sport="baseball"),
            Activity("running", "running", "running to first base", "running", ("running bases", "playing baseball"),
                     nouns=("base",)),
        ),
        (
            Group("bat", "bats", ("black", "brown", "silver"), "leaning against the fence", "fence",
                  ("against fence", "by fence")),
            Group("helmet", "helmets", ("blue", "red", "black"), "on the bench", "bench", ("on bench", "dugout")),
            Group("baseball", "baseballs", ("white",), "in a bucket", "bucket", ("in bucket",)),
        ),
        (Single("scoreboard", ("green", "black"), "in the outfield"),
         Single("cooler", ("orange", "red", "blue"), "in the dugout"),
         Single("tarp", ("blue", "green"), "along the fence")),
        (Located("glove", False, ("brown", "black"), (("on", "grass", ("on grass", "ground")),
                                                      ("on", "bench", ("on bench",)))),
         Located("bird", True, ("black", "white"), (("on", "grass", ("on grass", "field")),
                                                    ("on", "fence", ("on fence",))), ("standing", "sitting"))),
        ("dog", "car", "boat", "horse", "kite"),
    ),
    Theme(
        "field", ("farm", "pasture", "grass", "countryside"), ("in a field", "in a grassy field", "in a field on a farm"),
        ("a grassy field", "a green field", "a field on a farm"), False, ("shirt", "hat", "jacket"),
        (
            Activity("riding horse", "riding a horse", "riding {obj}", "on {obj}", ("horseback riding", "riding"),
                     "horse", verb="riding"),
            Activity("driving tractor", "driving a tractor", "driving {obj}", "on {obj}", ("driving", "farming"),
                     "tractor", verb="driving", who=ADULTS),
            Activity("feeding animals", "feeding the animals", "feeding the animals", "carrying {obj}",
                     ("feeding", "farming"), "bucket", verb="carrying", nouns=("animal",)),
            Activity("walking", "walking", "walking with {obj}", "carrying {obj}", ("hiking", "strolling"), "basket",
                     verb="carrying"),
        ),
        (
            Group("cow", "cows", ("brown", "black", "white"), "grazing on the grass", "grass", ("on grass", "field")),
            Group("sheep", "sheep", ("white",), "on the hill", "hill", ("on hill", "field")),
            Group("chicken", "chickens", ("white", "brown"), "near the barn", "barn", ("by barn", "farm")),
            Group("goat", "goats", ("white", "brown"), "behind the fence", "fence", ("behind fence", "pen")),
        ),
        (Single("barn", ("red", "white"), "in the distance"),
         Single("truck", ("red", "white", "blue"), "parked by the road"),
         Single("windmill", ("white", "red"), "on the hill")),
        (dog(("in", "grass", ("in grass", "field")), ("on", "hay", ("on hay", "hay bale"))),
         Located("cat", True, ("black", "orange", "gray"), (("on", "fence", ("on fence",)),
                                                            ("on", "hay", ("on hay", "hay bale"))))),
        ("motorcycle", "bus", "surfboard", "giraffe", "boat"),
    ),
    Theme(
        "restaurant", ("cafe", "diner", "at restaurant", "table"),
        ("in a restaurant", "at a restaurant", "inside a small restaurant"),
        ("a small restaurant", "a busy restaurant", "a cozy restaurant"), False, ("shirt", "sweater", "jacket"),
        (
            Activity("eating", "eating", "eating {obj}", "holding {obj}", ("eating sandwich", "having lunch"),
                     "sandwich", verb="eating", obj_alternatives=("food",)),
            Activity("drinking", "drinking", "drinking from {obj}", "holding {obj}", ("drinking wine", "having drink"),
                     "glass", obj_alternatives=("wine glass", "cup"), who=ADULTS),
            Activity("cutting cake", "cutting a cake", "cutting a cake with {obj}", "holding {obj}",
                     ("cutting", "celebrating"), "knife", nouns=("cake",)),
            Activity("reading menu", "reading the menu", "reading {obj}", "holding {obj}", ("reading", "ordering"),
                     "menu", verb="reading"),
            PHONE,
        ),
        (
            Group("plate", "plates", ("white",), "on the table", "table", ("on table",)),
            Group("candle", "candles", ("white", "red"), "on the bar", "bar", ("on bar", "counter")),
            Group("bottle", "bottles", ("green", "brown"), "on the shelf", "shelf", ("on shelf", "bar")),
        ),
        (Single("vase", ("blue", "white", "red"), "in the window"),
         Single("tablecloth", ("white", "red", "blue"), "on a corner table"),
         Single("mug", ("white", "blue"), "on the counter")),
        (Located("pizza", False, (), (("on", "table", ("on table",)), ("on", "counter", ("on counter",)))),
         dog(("under", "table", ("table", "floor")), ("by", "door", ("door", "at door")),
             ("on", "floor", ("on floor", "ground")))),
        ("horse", "bicycle", "surfboard", "elephant", "bus"),
    ),
    Theme(
        "train station", ("station", "platform", "train platform", "subway"),
        ("at a train station", "at the train station", "on a train station platform"),
        ("a quiet train station", "a busy train station", "an old train station"), False, ("jacket", "coat", "hat"),
        (
            Activity("waiting", "waiting for a train", "waiting for a train with {obj}", "holding {obj}",
                     ("waiting for train", "standing"), "suitcase", obj_alternatives=("luggage", "bag"),
                     nouns=("train",)),
            Activity("reading", "reading a newspaper", "reading {obj}", "holding {obj}",
                     ("reading newspaper", "reading paper"), "newspaper", verb="reading", obj_alternatives=("paper",)),
            PICTURE, PHONE,
            Activity("running", "running", "running with {obj}", "carrying {obj}", ("rushing", "running to train"),
                     "backpack", verb="carrying"),
        ),
        (
            Group("train", "trains", ("yellow", "red", "blue", "green", "silver"), "stopped at the platform",
                  "platform", ("at platform", "station", "tracks")),
            Group("bench", "benches", ("green", "brown", "blue"), "on the platform", "platform",
                  ("on platform", "station")),
            Group("light", "lights", ("white", "yellow"), "above the tracks", "tracks", ("above tracks", "ceiling")),
        ),
        (Single("clock", ("white", "black"), "above the platform"),
         Single("sign", ("blue", "green"), "above the tracks"),
         Single("trash can", ("gray", "black"), "on the platform")),
        (Located("pigeon", True, ("gray", "white"), (("on", "platform", ("on platform", "ground")),
                                                     ("on", "tracks", ("on tracks",)), ("on", "roof", ("on roof",))),
                 ("standing", "sitting")),
         dog(("on", "platform", ("on platform", "ground")), ("next to", "door", ("door", "by door")))),
        ("horse", "surfboard", "cow", "kite", "boat"),
    ),
    Theme(
        "airport", ("runway", "tarmac", "airfield"), ("at an airport", "at the airport", "at a small airport"),
        ("a busy airport", "an airport on a clear day", "a small airport"), False, ("jacket", "vest", "hat"),
        (
            Activity("walking", "walking", "walking with {obj}", "pulling {obj}", ("pulling suitcase", "traveling"),
                     "suitcase", verb="pulling", obj_alternatives=("luggage", "bag")),
            PICTURE,
            Activity("waving", "waving", "waving {obj}", "holding {obj}", ("waving flag", "directing plane", "signaling"),
                     "flag"),
            Activity("loading luggage", "loading luggage", "loading luggage", "carrying {obj}",
                     ("working", "loading plane"), "bag", verb="carrying", obj_alternatives=("luggage", "suitcase"),
                     nouns=("luggage",)),
        ),
        (
            Group("airplane", "airplanes", ("white", "blue"), "on the runway", "runway", ("tarmac", "on runway")),
            Group("truck", "trucks", ("white", "yellow"), "parked on the tarmac", "tarmac", ("on tarmac", "runway")),
            Group("cone", "cones", ("orange",), "near the gate", "gate", ("by gate", "ground")),
        ),
        (Single("bus", ("white", "blue"), "next to the terminal"),
         Single("cart", ("yellow", "blue"), "by the terminal"),
         Single("control tower", ("white", "gray"), "in the distance")),
        (Located("bird", True, ("black", "white"), (("on", "fence", ("on fence",)), ("on", "grass", ("on grass",))),
                 ("standing", "sitting")),
         Located("suitcase", False, ("black", "red", "blue"), (("on", "cart", ("on cart",)),
                                                               ("on", "ground", ("on ground", "tarmac"))))),
        ("horse", "cow", "surfboard", "boat", "dog"),
    ),
    Theme(
        "harbor", ("marina", "dock", "port", "water"), ("at the harbor", "in a small harbor", "at a harbor"),
        ("a quiet harbor", "a small harbor", "a harbor on a sunny day"), False, ("jacket", "hat", "vest"),
        (
            Activity("fishing", "fishing", "fishing with {obj}", "holding {obj}", ("fish", "sitting"), "fishing pole",
                     obj_alternatives=("pole", "fishing rod", "rod")),
            Activity("rowing", "rowing", "rowing with {obj}", "holding {obj}", ("boating", "paddling"), "oar",
                     obj_alternatives=("paddle",)),
            Activity("kayaking", "kayaking", "kayaking", "holding {obj}", ("paddling", "boating"), "paddle",
                     obj_alternatives=("oar",)),
            PICTURE,
        ),
        (
            Group("boat", "boats", ("white", "red", "blue"), "docked at the pier", "pier", ("dock", "water", "at pier")),
            Group("seagull", "seagulls", ("white", "gray"), "on the dock", "dock", ("on dock", "pier")),
            Group("buoy", "buoys", ("orange", "red", "yellow"), "in the water", "water", ("in water", "ocean")),
        ),
        (Single("lighthouse", ("white", "red"), "in the distance"),
         Single("flag", ("red", "blue"), "on a pole"),
         Single("house", ("blue", "white", "yellow"), "on the shore")),
        (dog(("on", "dock", ("on dock", "pier")), ("on", "rocks", ("on rocks", "shore"))),
         Located("pelican", True, ("brown", "white"), (("on", "post", ("on post", "pole")),
                                                       ("on", "railing", ("on railing", "rail")),
                                                       ("on", "rocks", ("on rocks",))), ("standing", "sitting"))),
        ("car", "horse", "train", "giraffe", "bicycle"),
    ),
    Theme(
        "office", ("desk", "work", "at work", "cubicle"), ("in an office", "at an office", "in a small office"),
        ("a small office", "a tidy office", "a busy office"), True, ("shirt", "sweater", "jacket"),
        (
            Activity("typing", "typing", "typing on {obj}", "using {obj}", ("working", "using laptop", "using computer"),
                     "laptop", verb="using", obj_alternatives=("computer", "notebook"), who=ADULTS),
            Activity("writing", "writing", "writing with {obj}", "holding {obj}", ("working", "taking notes"), "pen",
                     obj_alternatives=("pencil",), who=ADULTS),
            PHONE, COFFEE,
        ),
        (
            Group("monitor", "monitors", ("black", "white"), "on the desk", "desk", ("on desk",)),
            Group("book", "books", ("red", "blue", "black"), "on the shelf", "shelf", ("on shelf", "bookshelf")),
            Group("plant", "plants", ("green",), "by the window", "window", ("by window", "windowsill")),
        ),
        (Single("lamp", ("black", "white", "silver"), "next to the printer"),
         Single("filing cabinet", ("gray", "black"), "in the corner"),
         Single("clock", ("white", "black"), "on the wall")),
        (Located("cat", True, ("black", "white", "gray", "orange"),
                 (("on", "desk", ("on desk",)), ("on", "keyboard", ("on keyboard", "computer")),
                  ("on", "chair", ("on chair",)))),
         dog(("under", "desk", ("desk", "floor")), ("on", "chair", ("on chair",)))),
        ("horse", "surfboard", "car", "bus", "giraffe"),
    ),
    Theme(
        "zoo", ("enclosure", "wildlife park", "safari"), ("at the zoo", "at a zoo", "in a zoo"),
        ("a zoo on a sunny day", "a small zoo", "a busy zoo"), False, ("shirt", "hat", "jacket"),
        (
            PICTURE,
            Activity("eating ice cream", "eating ice cream", "eating {obj}", "holding {obj}", ("eating", "walking"),
                     "ice cream", verb="eating", obj_alternatives=("ice cream cone", "cone"),
                     obj_phrase="an ice cream cone"),
            Activity("pushing stroller", "pushing a stroller", "pushing {obj}", "with {obj}", ("walking", "strolling"),
                     "stroller", verb="pushing", obj_alternatives=("baby stroller", "carriage"), who=ADULTS),
            Activity("reading map", "reading a map", "reading {obj}", "holding {obj}", ("looking at map", "reading"),
                     "map", verb="reading"),
        ),
        (
            Group("giraffe", "giraffes", (), "behind the fence", "fence", ("behind fence", "enclosure")),
            Group("elephant", "elephants", ("gray",), "in the enclosure", "enclosure", ("in enclosure", "pen")),
            Group("flamingo", "flamingos", ("pink",), "in the water", "water", ("in water", "pond")),
            Group("zebra", "zebras", (), "near the trees", "trees", ("by trees", "field")),
        ),
        (Single("sign", ("brown", "green"), "near the path"),
         Single("bench", ("green", "brown"), "by the path"),
         Single("water tank", ("blue", "gray"), "in the enclosure")),
        (Located("monkey", True, ("brown", "black"), (("in", "tree", ("in tree", "branch")),
                                                      ("on", "rock", ("on rock",)), ("on", "rope", ("on rope",)))),
         Located("lion", True, ("brown",), (("on", "rock", ("on rock",)), ("in", "grass", ("in grass",)))),
         Located("bird", True, ("black", "white", "blue"), (("on", "railing", ("on railing", "rail")),
                                                            ("on", "rock", ("on rock",))), ("standing", "sitting"))),
        ("car", "surfboard", "bus", "train", "cow"),
    ),
)


@dataclass
class Scene:
    image_id: int
    theme: Theme
    who: str
    activity: Activity
    clothing: str
    clothing_color: str
    group: Group
    count: int
    group_color: str
    single: Single
    single_color: str
    located: Located
    located_color: str
    pose: str
    loc: tuple[str, str, tuple[str, ...]]


@dataclass
class Question:
    category: str
    text: str
    answer: str
    variants: tuple[str, ...]
    outliers: tuple[str, ...]
    topic: str  # what it is about, so one scene's questions do not give each other away


def plural(noun: str) -> str:
    if noun in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[noun]
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def article(phrase: str) -> str:
    vowel = phrase[0] in "aeiou" and not phrase.startswith(("uni", "use"))
    return ("an " if vowel else "a ") + phrase


def words(text: str) -> list[str]:
    """Lower-case words with articles dropped and number words as digits, to find a phrase in a caption."""
    tokens = re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()
    return [str(NUMBER_WORDS.index(t)) if t in NUMBER_WORDS else t for t in tokens if t not in ("a", "an", "the")]


def states(captions: list[str], phrase: str) -> bool:
    target = words(phrase)
    for caption in captions:
        tokens = words(caption)
        if any(tokens[i:i + len(target)] == target for i in range(len(tokens) - len(target) + 1)):
            return True
    return False


def names(text: str, noun: str) -> bool:
    return re.search(rf"\b({re.escape(noun)}|{re.escape(plural(noun))})\b", text.lower()) is not None


def make_scene(rng: random.Random, image_id: int, theme: Theme, activity: Activity) -> Scene:
    """A scene whose things are all told apart: no two share a name, and the located thing's place is its own."""
    for _ in range(1000):
        group, single, located = rng.choice(theme.groups), rng.choice(theme.singles), rng.choice(theme.located)
        loc = rng.choice(located.locs)
        clothing = rng.choice(theme.clothing)
        nouns = [n for n in (activity.obj, group.noun, single.noun, located.noun, clothing, *activity.nouns) if n]
        if any(names(a, b) or names(b, a) for i, a in enumerate(nouns) for b in nouns[i + 1:]):
            continue
        others = " ".join([*nouns, group.where, group.loc, *group.loc_alternatives, single.where,
                           activity.caption, activity.alt_caption])
        if names(others, loc[1]) or any(names(loc[1], n) for n in nouns):
            continue
        return Scene(
            image_id, theme, rng.choice(activity.who), activity, clothing, rng.choice(CLOTHING_COLORS), group,
            rng.choices(list(COUNT_WEIGHTS), list(COUNT_WEIGHTS.values()))[0],
            rng.choice(group.colors) if group.colors else "", single, rng.choice(single.colors), located,
            rng.choice(located.colors) if located.colors else "", rng.choice(located.poses) if located.animal else "",
            loc,
        )
    raise RuntimeError(f"no consistent scene for the {theme.place} theme")


def obj_phrase(activity: Activity) -> str:
    if activity.obj is None:
        return ""
    return activity.obj_phrase or article(activity.obj)


def style(rng: random.Random, text: str) -> str:
    """Caption quirks of human annotators: mixed capitals and final periods, a stray double or trailing space."""
    roll = rng.random()
    if roll < 0.55:
        text = text[0].upper() + text[1:] + "."
    elif roll < 0.85:
        pass
    else:
        text = text[0].upper() + text[1:]
    roll = rng.random()
    if roll < 0.07:
        spaces = [i for i, c in enumerate(text) if c == " "]
        cut = rng.choice(spaces)
        text = text[:cut] + " " + text[cut:]
    elif roll < 0.14:
        text += " "
    return text


def write_captions(rng: random.Random, scene: Scene) -> list[str]:
    t, a = scene.theme, scene.activity
    obj = obj_phrase(a)
    place = rng.choice(t.place_captions)
    who = article(scene.who)
    person = rng.choice(("{who} {act} {place}", "{who} is {act} {place}", "there is {who} {act} {place}")).format(
        who=who, act=a.caption.format(obj=obj), place=place)
    group, n = scene.group, scene.count
    color = scene.group_color + " " if scene.group_color else ""
    if n == 1:
        counted = rng.choice(("there is only one {c}{noun} {where}", "only one {c}{noun} can be seen {where}"))
    else:
        number = str(n) if rng.random() < 0.25 else NUMBER_WORDS[n]
        counted = rng.choice(("{number} {c}{plural} {where}", "there are {number} {c}{plural} {where}",
                              "a group of {number} {c}{plural} {where}"))
        counted = counted.replace("{number}", number)
    counted = counted.format(c=color, noun=group.noun, plural=group.plural, where=group.where)
    located, (prep, loc, _) = scene.located, scene.loc
    thing = article(f"{scene.located_color} {located.noun}".strip())
    if located.animal:
        where = rng.choice(("{thing} {pose} {prep} the {loc}", "{thing} is {pose} {prep} the {loc}"))
    else:
        where = rng.choice(("{thing} {prep} the {loc}", "{thing} sitting {prep} the {loc}"))
    where = where.format(thing=thing, pose=scene.pose, prep=prep, loc=loc)
    clothes = article(f"{scene.clothing_color} {scene.clothing}")
    dressed = rng.choice(("{alias} wearing {clothes} {alt}", "{alias} in {clothes} {alt}",
                          "{alias} {alt} while wearing {clothes}")).format(
        alias=rng.choice(ALIASES[scene.who]), clothes=clothes, alt=a.alt_caption.format(obj=obj))
    single = article(f"{scene.single_color} {scene.single.noun}")
    mention = f"some {group.plural}" if n > 1 else article(group.noun)
    templates = ["{intro} with {single} and {mention}", "{intro} with {single} {where}"]
    # "a sign in the snow down a snowy ski slope" says the place twice; only distinct phrasings follow `where`
    places = [p for p in t.place_captions if not set(words(p)) & set(words(scene.single.where))]
    if places:
        templates.append("{single} {where} {place}")
    overview = rng.choice(templates).format(
        intro=rng.choice(t.intros), single=single, mention=mention, where=scene.single.where,
        place=rng.choice(places) if places else "")
    captions = [person, counted, where, dressed, overview]
    rng.shuffle(captions)
    return [style(rng, c) for c in captions]


def location_answer(prep: str, loc: str, alternatives: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """People answer "couch" or "on couch"; for under/by/next to, the preposition is part of the answer."""
    if prep in ("on", "in", "at"):
        return loc, tuple(dict.fromkeys((f"{prep} {loc}", *alternatives)))
    return f"{prep} {loc}", tuple(dict.fromkeys((loc, *alternatives)))


def wrong_color(rng: random.Random, color: str) -> str:
    close = {color, *COLOR_VARIANTS.get(color, ()), *COLOR_NEAR.get(color, ())}
    return rng.choice([c for c in COLORS if c not in close])


def wrong_count(rng: random.Random, n: int) -> int:
    return rng.choice([m for m in (n - 2, n - 1, n + 1, n + 2) if m >= 2])


def wrong_activity(rng: random.Random, scene: Scene) -> Activity:
    """An activity of another theme, indoors or outdoors like this one, that cannot be confused with this one."""
    activity = scene.activity
    mine = {activity.answer, *activity.alternatives, activity.question.split()[0]}
    others = [a for t in THEMES if t.room == scene.theme.room for a in t.activities
              if not ({a.answer, *a.alternatives, a.question.split()[0]} & mine)]
    return rng.choice(list(dict.fromkeys(others)))  # shared activities once each, in a fixed order


def absent_noun(rng: random.Random, scene: Scene, captions: list[str]) -> str:
    text = " ".join(captions)
    return rng.choice([n for n in scene.theme.absent if not names(text, n)])


def yes_no_candidates(rng: random.Random, scene: Scene, captions: list[str], answer: bool,
                      negated: bool) -> list[tuple[str, str]]:
    """(topic, question) pairs whose answer is `answer`; negated ones put "not"/"no" in the question."""
    s, who, a = scene, scene.who, scene.activity
    prep, loc, _ = s.loc
    other_prep, other_loc, _ = rng.choice([x for x in s.located.locs if x[1] != loc])
    absent = absent_noun(rng, s, captions)
    wrong = wrong_activity(rng, s)
    place = s.theme.place_captions[0]  # the plainest phrasing reads best in a question
    candidates: list[tuple[str, str]] = []

    def add(topic: str, text: str, holds: bool) -> None:
        """`holds`: whether the question without its "not"/"no" is true; negation flips the answer."""
        if (holds != negated) == answer:
            candidates.append((topic, text))

    if not negated:
        add("single", f"Is there {article(s.single.noun)} in the picture?", True)
        add("single", f"Is the {s.single.noun} {s.single_color}?", True)
        add("single", f"Is the {s.single.noun} {wrong_color(rng, s.single_color)}?", False)
        add("clothing", f"Is the {who}'s {s.clothing} {s.clothing_color}?", True)
        add("clothing", f"Is the {who}'s {s.clothing} {wrong_color(rng, s.clothing_color)}?", False)
        add("activity", f"Is the {who} {a.question}?", True)
        add("activity", f"Is the {who} {wrong.question}?", False)
        if s.count > 1:
            add("group", f"Are there any {s.group.plural}?", True)
            add("group", f"Are there {NUMBER_WORDS[s.count]} {s.group.plural}?", True)
        add("group", f"Are there {NUMBER_WORDS[wrong_count(rng, s.count)]} {s.group.plural}?", False)
        add("absent", rng.choice((f"Is there {article(absent)} in the picture?", f"Are there any {plural(absent)}?",
                                  f"Is there {article(absent)} {place}?")), False)
        add("located", f"Is the {s.located.noun} {prep} the {loc}?", True)
        add("located", f"Is the {s.located.noun} {other_prep} the {other_loc}?", False)
        other_place = rng.choice([t.place for t in THEMES if t.place != s.theme.place and t.room == s.theme.room])
        add("place", f"Is this {article(s.theme.place)}?", True)
        add("place", f"Is this {article(other_place)}?", False)
    else:
        add("located", f"Is the {s.located.noun} not {prep} the {loc}?", True)
        add("located", f"Is the {s.located.noun} not {other_prep} the {other_loc}?", False)
        add("activity", f"Is the {who} not {a.question}?", True)
        add("activity", f"Is the {who} not {wrong.question}?", False)
        add("single", f"Is the {s.single.noun} not {s.single_color}?", True)
        add("single", f"Is the {s.single.noun} not {wrong_color(rng, s.single_color)}?", False)
        if s.count > 1:
            add("group", f"Are there no {s.group.plural} in the picture?", True)
        add("absent", rng.choice((f"Are there no {plural(absent)} in the picture?",
                                  f"Are there no {plural(absent)} {place}?")), False)
        add("people", f"Are there no people {place}?", True)
    return candidates


def open_candidates(rng: random.Random, scene: Scene, category: str) -> list[Question]:
    s, who, a = scene, scene.who, scene.activity
    prep, loc, loc_alternatives = s.loc
    out: list[Question] = []

    def add(topic: str, text: str, answer: str, variants: tuple[str, ...], outliers: tuple[str, ...]) -> None:
        out.append(Question(category, text, answer, tuple(v for v in variants if v != answer), outliers, topic))

    if category == "count":
        n = s.count
        text = rng.choice((f"How many {s.group.plural} are there?", f"How many {s.group.plural} are in the picture?",
                           f"How many {s.group.plural} are {s.group.where}?", f"How many {s.group.plural} can you see?"))
        add("group", text, str(n), (NUMBER_WORDS[n],), tuple(str(m) for m in (n - 1, n + 1) if m > 0))
    elif category == "color":
        def color(topic: str, text: str, c: str) -> None:
            add(topic, text, c, COLOR_VARIANTS.get(c, ()), COLOR_NEAR[c])

        color("single", f"What color is the {s.single.noun}?", s.single_color)
        color("clothing", f"What color is the {who}'s {s.clothing}?", s.clothing_color)
        if s.group_color:
            text = f"What color are the {s.group.plural}?" if s.count > 1 else f"What color is the {s.group.noun}?"
            color("group", text, s.group_color)
        if s.located_color:
            color("located", f"What color is the {s.located.noun}?", s.located_color)
    elif category == "object":
        if a.obj:
            add("obj", f"What is the {who} {a.verb}?", a.obj, a.obj_alternatives, ("nothing",))
        if s.located.animal:
            other = "cat" if s.located.noun == "dog" else "dog"
            text = rng.choice((f"What animal is {prep} the {loc}?", f"What kind of animal is {prep} the {loc}?"))
            add("located", text, s.located.noun, (), (other,))
        else:
            food = ("food",) if s.located.noun in ("cake", "pizza") else ()
            add("located", f"What is {prep} the {loc}?", s.located.noun, food, ("nothing",))
    elif category == "activity":
        add("activity", f"What is the {who} doing?", a.answer, a.alternatives, ("standing", "playing"))
        if a.sport:
            miss = "softball" if a.sport == "baseball" else "baseball"
            add("activity", f"What sport is the {who} playing?", a.sport, (), (miss,))
        if s.located.animal:
            add("located", f"What is the {s.located.noun} doing?", s.pose, POSE_VARIANTS[s.pose], ("playing",))
    elif category == "location":
        place_q = ("What room is this?", "Where was this picture taken?") if s.theme.room else (
            "Where was this picture taken?", "Where is this?", "Where was this photo taken?")
        add("place", rng.choice(place_q), s.theme.place, s.theme.place_alternatives,
            ("outside",) if not s.theme.room else ("house",))
        answer, variants = location_answer(prep, loc, loc_alternatives)
        others = tuple(x[1] for x in s.located.locs if x[1] != loc)
        add("located", f"Where is the {s.located.noun}?", answer, variants, others or ("ground",))
        if s.count > 1:
            add("group", f"Where are the {s.group.plural}?", s.group.loc, s.group.loc_alternatives, ("outside",))
    return out


def plan_categories(rng: random.Random, n_scenes: int) -> list[list[str]]:
    """Five categories per scene meeting QUOTAS exactly: each scene takes the five with the most left to place."""
    remaining = dict(QUOTAS)
    assert sum(remaining.values()) == n_scenes * QUESTIONS_PER_SCENE
    plans = []
    for _ in range(n_scenes):
        keys = list(remaining)
        rng.shuffle(keys)  # ties go to a random category
        keys.sort(key=lambda k: -remaining[k])
        for key in keys[:QUESTIONS_PER_SCENE]:
            remaining[key] -= 1
        plans.append([k.split("#")[0] for k in keys[:QUESTIONS_PER_SCENE]])
    assert not any(remaining.values())
    return plans


def write_questions(rng: random.Random, scene: Scene, captions: list[str], categories: list[str],
                    yes_no: dict[str, list[bool]]) -> list[Question]:
    """The scene's questions, the most constrained categories first, each on a topic not yet asked if it can."""
    order = ("count", "location", "color", "object", "activity", "yesno_negation", "yesno")
    used: set[str] = set()
    texts: set[str] = set()
    questions = []
    for category in sorted(categories, key=order.index):
        if category.startswith("yesno"):
            answer = yes_no[category].pop()
            pairs = yes_no_candidates(rng, scene, captions, answer, category == "yesno_negation")
            word = "yes" if answer else "no"
            options = [Question(category, text, word, (), ("no" if answer else "yes",), topic)
                       for topic, text in pairs]
        else:
            options = open_candidates(rng, scene, category)
        options = [q for q in options if q.text not in texts]
        fresh = [q for q in options if q.topic not in used]
        question = rng.choice(fresh or options)
        used.add(question.topic)
        texts.add(question.text)
        questions.append(question)
    rng.shuffle(questions)
    return questions


def human_answers(rng: random.Random, question: Question) -> list[tuple[str, str]]:
    """Ten (answer, confidence) pairs: mostly the canonical answer, some variants, rarely a wrong one."""
    agree = rng.choice(AGREEMENT[question.category])
    rest = 10 - agree
    if question.category in ("yesno", "yesno_negation"):
        wrong = rest  # on yes/no questions people disagree by giving the other answer
    else:
        wrong = int(rest > 0 and rng.random() < 0.35)
    answers = [(question.answer, "yes")] * agree
    answers += [(rng.choice(question.outliers), "maybe") for _ in range(wrong)]
    for _ in range(rest - wrong):  # a variant of the answer, or the answer itself where it has none
        answers.append((rng.choice(question.variants), rng.choice(("yes", "yes", "maybe"))) if question.variants
                       else (question.answer, "yes"))
    rng.shuffle(answers)
    return answers


def question_type(text: str) -> str:
    words_ = re.sub(r"[^a-z' ]", " ", text.lower()).split()
    matches = [t for t in QUESTION_TYPES if words_[:len(t.split())] == t.split()]
    return max(matches, key=len) if matches else "none of the above"


def check(scene: Scene, captions: list[str], question: Question) -> None:
    """What a question asks about is stated in a caption; an absent thing is named in none."""
    if question.category in ("yesno", "yesno_negation"):
        for noun in scene.theme.absent:
            if names(question.text, noun) and names(" ".join(captions), noun):
                raise AssertionError(f"image {scene.image_id}: {noun!r} is both absent and in a caption")
    elif not states(captions, question.answer):
        raise AssertionError(f"image {scene.image_id}: no caption states {question.answer!r} ({question.text})")


def dump(path: Path, data: dict[str, Any], records_key: str | None = None) -> None:
    """JSON with one record per line: small diffs, and the same bytes on every run."""
    if records_key is None:
        text = json.dumps(data, indent=1, ensure_ascii=False)
    else:
        head = {k: v for k, v in data.items() if k != records_key}
        records = ",\n".join(json.dumps(r, ensure_ascii=False) for r in data[records_key])
        text = json.dumps(head, ensure_ascii=False)[:-1] + f', "{records_key}": [\n{records}\n]}}'
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        handle.write(text + "\n")


def build(out_dir: Path) -> Counter[str]:
    rng = random.Random(SEED)
    scenes = []
    for theme in THEMES:
        activities = list(theme.activities)
        rng.shuffle(activities)
        for j in range(SCENES_PER_THEME):
            image_id = FIRST_IMAGE_ID + len(scenes)
            scenes.append(make_scene(rng, image_id, theme, activities[j % len(activities)]))
    plans = plan_categories(rng, len(scenes))
    yes_no: dict[str, list[bool]] = {}
    for category in ("yesno", "yesno_negation"):
        total = sum(p.count(category) for p in plans)
        answers = [True] * (total // 2) + [False] * (total - total // 2)
        rng.shuffle(answers)
        yes_no[category] = answers

    info = {"description": "zsvqa development set: synthetic scenes written as captions and VQA questions "
                           "for this project; no COCO content", "version": "1.0"}
    questions, annotations, captions_out, categories = [], [], {}, {}
    for scene, plan in zip(scenes, plans):
        captions = write_captions(rng, scene)
        captions_out[str(scene.image_id)] = captions
        for index, question in enumerate(write_questions(rng, scene, captions, plan, yes_no)):
            check(scene, captions, question)
            question_id = scene.image_id * 1000 + index
            answers = human_answers(rng, question)
            most_common = Counter(a for a, _ in answers).most_common(1)[0][0]
            assert most_common == question.answer
            questions.append({"image_id": scene.image_id, "question": question.text, "question_id": question_id})
            annotations.append({
                "question_type": question_type(question.text),
                "multiple_choice_answer": most_common,
                "answers": [{"answer": a, "answer_confidence": c, "answer_id": i + 1} for i, (a, c) in
                            enumerate(answers)],
                "image_id": scene.image_id,
                "answer_type": ANSWER_TYPES.get(question.category, "other"),
                "question_id": question_id,
            })
            categories[str(question_id)] = question.category
    out_dir.mkdir(parents=True, exist_ok=True)
    common = {"info": info, "license": {"name": "same as the zsvqa repository"}, "data_subtype": "dev",
              "data_type": "synthetic"}
    dump(out_dir / "questions.json", {**common, "task_type": "Open-Ended", "questions": questions}, "questions")
    dump(out_dir / "annotations.json", {**common, "annotations": annotations}, "annotations")
    dump(out_dir / "captions.json", captions_out)
    dump(out_dir / "categories.json", categories)
    return Counter(categories.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", nargs="?", default=str(Path(__file__).resolve().parent),
                        help="where to write the four JSON files [default: this folder]")
    counts = build(Path(parser.parse_args().out_dir))
    print(", ".join(f"{k} {v}" for k, v in sorted(counts.items())), f"({sum(counts.values())} questions)")


if __name__ == "__main__":
    main()
