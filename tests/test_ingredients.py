"""Ingredients as the LOFAR framework's recipes declare them: fields, the mapping, inheritance."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lofarexec.errors import LofarexecError
from lofarpipe.support import lofaringredient as ingredient
from lofarpipe.support.baserecipe import BaseRecipe


def test_string_and_number_fields_convert_command_line_text():
    assert ingredient.StringField().is_valid("1") and not ingredient.StringField().is_valid(1)
    integer = ingredient.IntField(default=1)
    assert integer.default == 1 and integer.coerce("7") == 7
    assert integer.is_valid(7) and not integer.is_valid("7") and not integer.is_valid(True)
    assert integer.coerce("seven") == "seven"  # left as is: is_valid then refuses it
    number = ingredient.FloatField()
    assert number.coerce("0.5") == 0.5 and number.is_valid(0.5) and not number.is_valid("0.5")


def test_path_fields_check_the_file_system(tmp_path):
    program = tmp_path / "prog"
    program.write_text("#!/bin/sh\n")
    plain = tmp_path / "plain"
    plain.write_text("")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    assert ingredient.FileField().is_valid(str(plain)) and not ingredient.FileField().is_valid(1)
    assert not ingredient.FileField().is_valid(str(tmp_path / "absent"))
    assert ingredient.ExecField().is_valid(str(program))
    assert not ingredient.ExecField().is_valid(str(plain))
    assert not ingredient.ExecField().is_valid(str(tmp_path))  # a directory is no program
    directory = ingredient.DirectoryField()
    made = tmp_path / "a" / "b"
    assert directory.is_valid(directory.coerce(str(made))) and made.is_dir()
    assert not directory.is_valid(1) and not directory.is_valid(str(plain))
    files = ingredient.FileList()
    assert files.is_valid([str(plain), str(program)])
    assert not files.is_valid([str(plain), str(tmp_path / "absent")])
    assert not files.is_valid(str(plain))  # a string is not a list


def test_bool_list_and_dict_fields_convert_text():
    flag = ingredient.BoolField()
    for text, value in [("True", True), ("false", False), ("yes", True), ("0", False),
                        ("None", False), ("", False)]:
        assert flag.coerce(text) is value
    assert not flag.is_valid(flag.coerce("maybe"))
    listed = ingredient.ListField()
    assert listed.coerce("[a, 'b', c ]") == ["a", "b", "c"] and listed.coerce("x,y") == ["x", "y"]
    assert listed.coerce("") == [] and listed.is_valid(("a",)) and not listed.is_valid("a")
    assert not listed.is_valid({"a": 1})
    mapping = ingredient.DictField()
    assert mapping.coerce("{'a': 1}") == {"a": 1} and mapping.is_valid({})
    assert not mapping.is_valid(mapping.coerce("[1]"))


def test_help_shows_the_default_or_optional():
    assert ingredient.IntField(help="steps", default=3).option_help() == "steps [Default: 3]"
    assert ingredient.StringField(help="x", optional=True).option_help() == "x [Optional]"
    assert ingredient.StringField(help="x").option_help() == "x"


def make_mapping() -> ingredient.LOFARingredient:
    return ingredient.LOFARingredient({
        "defaulted": ingredient.StringField(default="foo"),
        "unset": ingredient.StringField(),
        "bad_default": ingredient.StringField(default=1),
        "maybe": ingredient.IntField(optional=True),
    })


def test_mapping_holds_values_set_and_defaults_of_fields_not_set():
    values = make_mapping()
    assert sorted(values) == ["bad_default", "defaulted"] and len(values.keys()) == 2
    assert values["defaulted"] == "foo"
    with pytest.raises(KeyError):
        values["unset"]
    assert "unset" not in values and values.get("unset") is None
    values["unset"] = "bar"
    values["maybe"] = "4"
    assert values["unset"] == "bar" and values["maybe"] == 4
    assert values.missing() == [] and values.complete()
    del values["unset"]
    assert values.missing() == ["unset"] and not values.complete()


def test_a_bad_value_is_a_type_error_and_ours_naming_the_ingredient():
    values = make_mapping()
    with pytest.raises(TypeError, match="'bad_default'"):
        values["bad_default"]
    values["bad_default"] = "fixed"
    assert values["bad_default"] == "fixed"
    with pytest.raises(LofarexecError, match=r"'maybe' \(IntField: an integer is needed\)"):
        values["maybe"] = "four"
    with pytest.raises(TypeError, match="'other' is not a declared ingredient"):
        values["other"] = 1


def test_update_stores_as_given_like_the_original():
    values = make_mapping()
    values.update({"debug": True}, maybe="text")
    assert values["debug"] is True and values["maybe"] == "text"


def test_lofarinput_keeps_only_the_framework_inputs():
    given = {"job_name": "J", "args": ["a"], "mine": 1, "dry_run": True}
    assert ingredient.LOFARinput(given) == {"job_name": "J", "dry_run": True}
    assert ingredient.LOFARoutput() == {}


class Parent(BaseRecipe):
    inputs = {"first": ingredient.StringField("--first")}
    outputs = {"made": ingredient.StringField()}


class Child(Parent):
    inputs = {"second": ingredient.IntField("--second", default=2)}


class Seedlike(BaseRecipe):
    def go(self):
        return super().go()


def test_inputs_are_inherited_and_outputs_are_not():
    child = Child()
    assert {"first", "second", "job_name", "args"} <= set(child.inputs.fields)
    assert "first" not in Parent().outputs and "made" in Parent().outputs.fields
    assert "made" not in child.outputs.fields
    assert "first" not in Child._infields or Parent._infields["first"] is Child._infields["first"]
    assert "second" not in Parent._infields


def test_a_recipe_declaring_ingredients_may_have_its_own_config_section():
    section = Path(__file__).stem
    assert section in Child.config_sections and section in Parent.config_sections
    assert section not in Seedlike.config_sections


def test_a_recipe_without_ingredients_keeps_plain_dicts():
    recipe = Seedlike()
    assert type(recipe.inputs) is dict and type(recipe.outputs) is dict
    recipe.inputs["anything"] = object()  # the seed's recipes may store what they like


def test_framework_reports_are_accepted_outputs():
    recipe = Child()
    recipe.outputs["return_xml"] = "<nodes/>"
    recipe.outputs["return_json"] = "[]"
    assert recipe.outputs.missing() == []


def test_the_original_module_path_re_exports_ours():
    import lofarexec.ingredients as ours

    for name in ours.__all__:
        assert getattr(ingredient, name) is getattr(ours, name)
    assert os.path.basename(ingredient.__file__) == "lofaringredient.py"


def test_a_default_list_is_the_recipes_own_copy_and_keeps_changes():
    fields = {"outs": ingredient.ListField(default=[]), "none": ingredient.ListField(default="")}
    first, second = ingredient.LOFARingredient(fields), ingredient.LOFARingredient(fields)
    first["outs"].append("a.map")
    assert first["outs"] == ["a.map"] and second["outs"] == [] and fields["outs"].default == []
    assert first["none"] == [] and not first.is_set("outs")
