"""Class-name cleaning, templates and class-name validation."""
import pytest

from bridgelib.prompts import (DISAMBIGUATION, MULTI_TEMPLATES, clean_class_name,
                               clean_class_names, make_prompt, validate_class_names)


@pytest.mark.parametrize("raw, cleaned", [
    ("apple_pie", "apple pie"),
    ("  Golden-retriever  ", "golden retriever"),
    ("american_bulldog", "american bulldog"),
    ("American_Bulldog", "American Bulldog"),     # Title Case throughout: a proper name
    ("Boeing 717", "Boeing 717"),
    ("red SUV_car", "red SUV car"),               # acronym kept, the rest lowercased
    ("Faces_easy", "faces easy"),
    ("digit seven", "digit seven"),
])
def test_clean_class_name(raw, cleaned):
    assert clean_class_name(raw) == cleaned


def test_disambiguation_only_for_its_dataset():
    assert "pets" in DISAMBIGUATION
    assert clean_class_names(["Abyssinian", "boxer", "beagle"], "pets") == \
        ["Abyssinian cat", "boxer dog", "beagle"]
    assert clean_class_names(["boxer"]) == ["boxer"]
    assert clean_class_names(["boxer"], "digits") == ["boxer"]


def test_single_is_the_papers_prompt():
    assert make_prompt("single", "digit seven", 123, None) == "A good photo of the digit seven"


def test_multi_is_deterministic_per_seed_and_varies():
    prompts = [make_prompt("multi", "cat", s, None) for s in range(40)]
    assert prompts == [make_prompt("multi", "cat", s, None) for s in range(40)]
    assert len(set(prompts)) == len(MULTI_TEMPLATES) >= 6
    assert all("cat" in p for p in prompts)


def test_dsi_needs_a_token():
    assert make_prompt("dsi", "digit one", 0, "<s*>") == "A digit one photo in the style of <s*>"
    with pytest.raises(ValueError, match="needs a style token"):
        make_prompt("dsi", "digit one", 0, None)


def test_unknown_template():
    with pytest.raises(ValueError) as err:
        make_prompt("x", "cat", 0, None)
    assert str(err.value) == "unknown template 'x'; valid: single, multi, dsi"


@pytest.mark.parametrize("names, bad", [
    (["cat", "dog", "cat"], "'cat'"),
    (["cat", ""], "''"),
    (["cat", "   "], "'   '"),
    (["cat", "a/b"], "'a/b'"),
])
def test_validate_class_names(names, bad):
    with pytest.raises(ValueError, match=bad):
        validate_class_names(names)


def test_validate_class_names_accepts_good_names():
    assert validate_class_names(["digit one", "digit two"]) == ["digit one", "digit two"]
