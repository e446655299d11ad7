"""``from lofarpipe.support.baserecipe import BaseRecipe`` (the seed's recipe import)."""

from lofarexec.recipe import BaseRecipe

__all__ = ["BaseRecipe"]
