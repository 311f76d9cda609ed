"""Word pools for the synthetic corpus, and the one rule that splits them between train/validation/test.

Every pool is split by a fixed hash of each word (not by the seed), so no seed can ever put the same name,
place, item or project into two splits; sentences built from them therefore never repeat across splits.
"""

from __future__ import annotations

import functools
import hashlib

SPLITS = ("train", "validation", "test")

# 10-slot pattern: 6 train, 2 validation, 2 test (applied to words sorted by hash).
_PATTERN = ("train", "validation", "train", "test", "train", "train", "validation", "train", "test", "train")

FEMALE_NAMES = """
Maria Aisha Elena Sofia Hannah Chloe Priya Yuki Fatima Ingrid Olga Nadia Amara Leila Chiara Greta Ines Lucia
Mei Zara Emma Olivia Ava Isla Freya Ruth Naomi Esther Clara Vera Irene Helen Diana Laura Sarah Rebecca Alice
Julia Martha Rosa Carmen Anya Keiko Sana Noor Lina Maya Tara Nina Eva Rita Paula Wendy Grace Joy Hope Iris
Daisy Hazel Ivy Ruby Pearl Amber Jade Beatrice Agnes Edith Mabel Nora Stella Lydia Miriam Sylvia Tessa Fiona
Gemma Harriet Imogen Jasmine Kira Lara Molly Nell Orla Pia Quinn Rosalind Selma Thea Una Valerie Willa Yara
""".split()

MALE_NAMES = """
James Omar Lucas Mateo Kenji Arjun Felix Hugo Ivan Jonas Kofi Liam Marco Noah Oscar Pablo Rafael Samuel Tomas
Viktor Yusuf Ahmed Bruno Carlos Daniel Emil Farid George Hassan Isaac Jacob Karl Leon Malik Nikolai Otto Peter
Ravi Stefan Theo Umar Vincent Walter Xavier Yosef Zane Adrian Boris Cedric Dmitri Edwin Frank Gustav Henry
Igor Jasper Kurt Lorenzo Magnus Nils Orlando Patrick Rolf Sven Tobias Ulrich Victor William Alfred Bernard
Clement Dexter Elliot Fergus Gideon Harold Ignatius Jerome Kasper Lionel Milo Neville Percy Quentin Rupert
""".split()

SURNAMES = """
Lopez Okafor Tanaka Novak Schmidt Rossi Dubois Kowalski Jensen Haddad Silva Nakamura Petrov Andersen Moreau
Fischer Costa Nguyen Kim Chen Patel Singh Cohen Murphy Kelly Walsh Byrne Larsen Berg Lindqvist Virtanen Horvat
Kovacs Popescu Ivanova Demir Yilmaz Mensah Adeyemi Banda Mwangi Diallo Fofana Herrera Castillo Vargas Romero
Navarro Medina Ortega Delgado Reyes Flores Morales Santos Pereira Almeida Barros Teixeira Brandt Keller Wagner
Becker Hoffmann Richter Klein Wolf Neumann Schulz Zimmermann Hartmann Lange Werner Krause Lehmann Fox Hale
Pryce Grant Ellis Hunt Marsh Stone Woods Blake Cross Frost Lowe Pike Quill Reed Shaw Thorne Vance Webb Yates
""".split()

PLACES = """
Lisbon Oslo Nairobi Osaka Toronto Lima Cairo Dublin Vienna Prague Bergen Porto Seville Krakow Tallinn Riga
Vilnius Helsinki Zurich Geneva Lyon Marseille Bordeaux Naples Turin Bologna Valencia Bilbao Munich Hamburg
Leipzig Dresden Antwerp Ghent Utrecht Rotterdam Aarhus Malmo Gothenburg Reykjavik Edinburgh Glasgow Cardiff
Belfast Bristol Leeds York Brighton Boston Denver Austin Seattle Portland Chicago Atlanta Phoenix Montreal
Halifax Calgary Quito Bogota Santiago Montevideo Havana Accra Lagos Dakar Kigali Kampala Lusaka Windhoek
Durban Tunis Rabat Muscat Doha Amman Baku Tbilisi Yerevan Almaty Tashkent Hanoi Manila Jakarta Perth
Adelaide Hobart Auckland Wellington Suva Apia Colombo Kathmandu Dhaka Madras Kyoto Sapporo Busan Taipei
""".split()

ITEMS = """
projector umbrella stapler microphone laptop notebook whiteboard printer calculator thermos backpack lantern
compass telescope keyboard headset scanner toaster kettle blender ladder hammer wrench shovel bucket helmet
flashlight battery cable charger tripod camera speaker router modem monitor tablet clipboard binder folder
envelope parcel suitcase briefcase wallet passport ticket badge lanyard whistle trophy medal banner poster
easel canvas paintbrush guitar violin trumpet drum cello harp accordion bicycle scooter skateboard kayak
paddle tent hammock blanket pillow mattress curtain carpet lamp candle vase teapot mug spatula colander
grater ladle skillet saucepan oven freezer heater radiator fan thermostat generator compressor forklift
pallet crate barrel trolley wheelbarrow sprinkler hose rake chisel drill sander microscope beaker pipette
""".split()

PROJECTS = """
Aurora Beacon Cobalt Delta Ember Falcon Granite Harbor Indigo Juniper Kestrel Lighthouse Meridian Nimbus
Orchard Pioneer Quartz Redwood Summit Tundra Unity Vanguard Willow Zephyr Atlas Bramble Cascade Dune Echo
Fjord Glacier Horizon Iris Jasper Keystone Lagoon Mosaic Nova Onyx Prism Quasar Ripple Sierra Tidal Umber
Velvet Wavelength Yonder Zenith Acorn Basalt Cedar Driftwood Evergreen Foxglove Gazelle Heron Ibis Jetty
""".split()

ROOMS = """
archive library boardroom cafeteria basement laboratory workshop studio gallery lobby attic greenhouse
garage warehouse kitchen pantry observatory auditorium gymnasium chapel classroom clinic darkroom foyer
mailroom newsroom pavilion rotunda seminar_room server_room storeroom terrace vault veranda
""".split()

WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "grey", "white", "black", "brown"]


def _rank(word: str) -> str:
    return hashlib.md5(word.encode("utf-8")).hexdigest()


@functools.lru_cache(maxsize=None)
def split_pool(pool: tuple[str, ...], split: str) -> tuple[str, ...]:
    """The part of ``pool`` that belongs to ``split``: fixed for ever, disjoint between splits."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}")
    ordered = sorted(set(pool), key=_rank)
    return tuple(w for i, w in enumerate(ordered) if _PATTERN[i % len(_PATTERN)] == split)


def pools_for(split: str) -> dict[str, tuple[str, ...]]:
    """Every partitioned pool of one split, keyed by slot name."""
    return {
        "female_name": split_pool(tuple(FEMALE_NAMES), split),
        "male_name": split_pool(tuple(MALE_NAMES), split),
        "surname": split_pool(tuple(SURNAMES), split),
        "place": split_pool(tuple(PLACES), split),
        "item": split_pool(tuple(ITEMS), split),
        "project": split_pool(tuple(PROJECTS), split),
        "room": tuple(r.replace("_", " ") for r in split_pool(tuple(ROOMS), split)),
    }


@functools.lru_cache(maxsize=None)
def lexicon_for(split: str) -> tuple[str, ...]:
    """This split's share of the lexicon (``lexicon.txt``: the LLM's single-token words, none of them a pool word;
    ``scripts/make_lexicon.py`` says how it was made), split by the same fixed hash as the pools."""
    from importlib.resources import files

    words = files("speechpress.data").joinpath("lexicon.txt").read_text(encoding="utf-8").split()
    return split_pool(tuple(words), split)
