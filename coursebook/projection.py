"""``expand`` and ``fields`` compiled into an immutable ``Projection``.

A projection says, for one resource, which fields to render in which order and
which relations to load, recursively. Compiling validates every name against the
resource graph, so errors are found before any database work; the same query
string always compiles to the same (cached) projection.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from coursebook.errors import invalid
from coursebook.fields import Field, Relation, Resource, ToOne, reads
from coursebook.graph import RESOURCES

MAX_DEPTH = 4
MAX_PARAMETER_LENGTH = 4096
MAX_ITEMS = 256

# A parsed parameter: name -> subtree. In ``fields`` a ``None`` subtree means "whole".
Tree = dict[str, "Tree | None"]


@dataclass(frozen=True, slots=True, eq=False)
class Projection:
    """Which fields of ``resource`` to render, and the projections of loaded relations.

    Pure data, compared by identity: compiling caches projections, so the same query
    string gives the same object, and later stages key their own caches by it.
    """

    resource: Resource
    fields: tuple[Field, ...]
    #: The relations to load, in field order, each with the projection of its targets.
    children: tuple[tuple[Relation, Projection], ...]
    #: The row keys rendering and loading read at this level: statements select these.
    columns: frozenset[str]

    def walk(self) -> list[tuple[str, Projection]]:
        """Every projection in the tree with its dotted path (root first)."""
        found: list[tuple[str, Projection]] = [("", self)]
        for relation, child in self.children:
            for path, projection in child.walk():
                found.append((f"{relation.name}.{path}".rstrip("."), projection))
        return found


def _split(parameter: str, raw: str) -> list[list[str]]:
    if len(raw) > MAX_PARAMETER_LENGTH:
        raise invalid(parameter, f"'{parameter}' is longer than {MAX_PARAMETER_LENGTH} characters.")
    items = [item.strip() for item in raw.split(",")]
    paths = [item.split(".") for item in items if item]
    if len(paths) > MAX_ITEMS:
        raise invalid(parameter, f"'{parameter}' names more than {MAX_ITEMS} items.")
    for path in paths:
        if any(not segment for segment in path):
            raise invalid(parameter, f"'{'.'.join(path)}' has an empty name in it.")
    return paths


def _listing(names: list[str]) -> str:
    return ", ".join(names) if names else "none"


def _parse_expand(resource: Resource, raw: str) -> Tree:
    tree: Tree = {}
    for path in _split("expand", raw):
        if len(path) > MAX_DEPTH:
            raise invalid(
                "expand", f"You cannot expand more than {MAX_DEPTH} levels of a property."
            )
        node, place = tree, resource
        for depth, name in enumerate(path):
            found = place.field(name)
            if found is None or not (found.expandable or found.deferred):
                raise invalid(
                    "expand",
                    f"'{'.'.join(path[: depth + 1])}' cannot be expanded here. "
                    f"Expandable: {_listing(place.expandable_names)}.",
                )
            child = node.setdefault(name, {})
            assert child is not None
            node = child
            if depth + 1 < len(path):
                place = _nested(found, path, "expand", place)
    return tree


def _nested(found: Field, path: list[str], parameter: str, place: Resource) -> Resource:
    """The resource behind ``found``, which ``path`` descends into."""
    if not isinstance(found, Relation):
        raise invalid(
            parameter,
            f"'{'.'.join(path)}' has no nested fields: '{found.name}' is not expandable. "
            f"Nested: {_listing(sorted(f.name for f in place.relations))}.",
        )
    return RESOURCES[found.target]


def _parse_fields(resource: Resource, raw: str) -> Tree:
    tree: Tree = {}
    for path in _split("fields", raw):
        if len(path) > MAX_DEPTH + 1:
            raise invalid(
                "fields", f"You cannot expand more than {MAX_DEPTH} levels of a property."
            )
        node: Tree | None = tree
        place = resource
        for depth, name in enumerate(path):
            found = place.field(name)
            if found is None:
                raise invalid(
                    "fields",
                    f"'{'.'.join(path[: depth + 1])}' is not a field here. "
                    f"Fields: {_listing(place.field_names)}.",
                )
            assert node is not None
            if depth + 1 == len(path):
                # The whole field, unless a dotted name selects inside it (in any order:
                # ``venue,venue.name`` is the venue, expanded, with its name).
                node.setdefault(name, None)
                break
            place = _nested(found, path, "fields", place)
            if node.get(name) is None:
                node[name] = {}
            node = node[name]
    return tree


def _build(resource: Resource, expand: Tree, fields: Tree | None) -> Projection:
    if fields is None:
        chosen = [f for f in resource.fields if not f.deferred or f.name in expand]
    else:
        chosen = [f for f in resource.fields if f.name in fields]
    children: list[tuple[Relation, Projection]] = []
    for field in chosen:
        if not isinstance(field, Relation):
            continue
        sub_expand = expand.get(field.name)
        sub_fields = fields.get(field.name) if fields is not None else None
        if field.deferred or sub_expand is not None or sub_fields is not None:
            target = RESOURCES[field.target]
            children.append((field, _build(target, sub_expand or {}, sub_fields)))
    loaded = {relation.name for relation, _child in children}
    return Projection(resource, tuple(chosen), tuple(children), _columns(chosen, loaded))


def _columns(chosen: list[Field], loaded: set[str]) -> frozenset[str]:
    """The row keys that rendering ``chosen`` and loading its relations read.

    ``id`` always: the loader keys rows by it. A loaded to-one relation reads its key
    column; a loaded to-many one, the row's id; anything else what its kind reads.
    """
    keys = {"id"}
    for field in chosen:
        if field.name not in loaded:
            keys.update(reads(field))
        elif isinstance(field, ToOne):
            keys.add(field.key)
    return frozenset(keys)


@lru_cache(maxsize=4096)
def compile_projection(resource_name: str, expand: str, fields: str) -> Projection:
    """Compile the raw ``expand`` and ``fields`` parameters for ``resource_name``."""
    resource = RESOURCES[resource_name]
    expand_tree = _parse_expand(resource, expand)
    fields_tree = _parse_fields(resource, fields) if fields.strip(" ,") else None
    return _build(resource, expand_tree, fields_tree)
