"""Check, before anything runs, that a component fits the world this host serves: it imports nothing but
the WASI 0.2 interfaces the linker supplies (_wasi.py) and worldrt:verse interfaces, their functions
have the types the host converts (see _convert), and it exports ``run``."""

from __future__ import annotations

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from wasmtime import Engine
from wasmtime.component import (
    F32,
    F64,
    S8,
    S16,
    S32,
    S64,
    U8,
    U16,
    U32,
    U64,
    Bool,
    BorrowType,
    Char,
    Component,
    ComponentInstanceType,
    EnumType,
    FuncType,
    ListType,
    OptionType,
    OwnType,
    RecordType,
    ResultType,
    String,
    TupleType,
    ValType,
    VariantType,
)

from worldrt.descriptors import descriptor_of, is_map, is_repeated, map_value, message_type
from worldrt.host.runtime._codec import enum_cases, kebab
from worldrt.host.runtime._errors import ComponentError
from worldrt.host.runtime._wasi import WASI_SUMMARY, advice, wasi_supplied
from worldrt.host.runtime._world import (
    HOST_INTERFACES,
    LOG_LEVELS,
    OPERATIONS,
    PROVIDER_INTERFACES,
    WIT_PACKAGE,
    WIT_VERSIONS,
    interface_version,
    wit_interface,
)

RUN_SIGNATURE = "func(verse-id: u64, args: string) -> result<string, string>"

_PRIMITIVES: dict[type, str] = {
    Bool: "bool", S8: "s8", S16: "s16", S32: "s32", S64: "s64", U8: "u8", U16: "u16", U32: "u32", U64: "u64",
    F32: "f32", F64: "f64", Char: "char", String: "string",
}

_PROTO_SCALARS: dict[int, type] = {
    FieldDescriptor.TYPE_DOUBLE: F64, FieldDescriptor.TYPE_FLOAT: F32,
    FieldDescriptor.TYPE_INT64: S64, FieldDescriptor.TYPE_SINT64: S64, FieldDescriptor.TYPE_SFIXED64: S64,
    FieldDescriptor.TYPE_UINT64: U64, FieldDescriptor.TYPE_FIXED64: U64,
    FieldDescriptor.TYPE_INT32: S32, FieldDescriptor.TYPE_SINT32: S32, FieldDescriptor.TYPE_SFIXED32: S32,
    FieldDescriptor.TYPE_UINT32: U32, FieldDescriptor.TYPE_FIXED32: U32,
    FieldDescriptor.TYPE_BOOL: Bool, FieldDescriptor.TYPE_STRING: String,
}

_PROVIDED = {wit_interface(name, version) for name in PROVIDER_INTERFACES + HOST_INTERFACES for version in WIT_VERSIONS}
WIT_WORLD_IMPORTS = (f"{WIT_PACKAGE}/{{{','.join(PROVIDER_INTERFACES + HOST_INTERFACES)}}}@"
                     f"{{{','.join(WIT_VERSIONS)}}}")


def world_versions(imports: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The versions of worldrt:verse that these import names select, oldest first."""
    found = {v[1] for v in map(interface_version, imports) if v is not None}
    return tuple(v for v in WIT_VERSIONS if v in found)


TypeNames = tuple[tuple[ValType, str], ...]


def render(ty: ValType, names: TypeNames = ()) -> str:
    """A WIT-like spelling of a value type; records and enums found in ``names`` are spelled by name."""
    if type(ty) in _PRIMITIVES:
        return _PRIMITIVES[type(ty)]
    if isinstance(ty, (RecordType, EnumType)):
        for known, name in names:
            if type(known) is type(ty) and known == ty:
                return name
    if isinstance(ty, ListType):
        return f"list<{render(ty.element, names)}>"
    if isinstance(ty, OptionType):
        return f"option<{render(ty.payload, names)}>"
    if isinstance(ty, TupleType):
        return f"tuple<{', '.join(render(t, names) for t in ty.elements)}>"
    if isinstance(ty, ResultType):
        ok, err = ty.ok, ty.err
        return f"result<{render(ok, names) if ok else '_'}, {render(err, names) if err else '_'}>"
    if isinstance(ty, RecordType):
        return "record {" + ", ".join(f"{n}: {render(t, names)}" for n, t in ty.fields) + "}"
    if isinstance(ty, EnumType):
        return "enum {" + ", ".join(ty.names) + "}"
    if isinstance(ty, VariantType):
        return "variant {" + ", ".join(n if t is None else f"{n}({render(t, names)})" for n, t in ty.cases) + "}"
    if isinstance(ty, OwnType):
        return "own<resource>"
    if isinstance(ty, BorrowType):
        return "borrow<resource>"
    return type(ty).__name__.lower()


def render_func(ty: FuncType, names: TypeNames = ()) -> str:
    params = ", ".join(f"{name}: {render(t, names)}" for name, t in ty.params)
    result = ty.result
    return f"func({params})" + (f" -> {render(result, names)}" if result is not None else "")


class _Mismatch(Exception):
    pass


def _check_scalar(ty: ValType, field: FieldDescriptor, where: str) -> None:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if not isinstance(ty, RecordType):
            raise _Mismatch(f"{where} is {render(ty)}, expected a record for {message_type(field).full_name}")
        _check_record(ty, message_type(field), where)
    elif field.type == FieldDescriptor.TYPE_ENUM:
        known = set(enum_cases(field.enum_type).values())
        if not isinstance(ty, EnumType) or not set(ty.names) <= known:
            raise _Mismatch(f"{where} is {render(ty)}, expected enum {{{', '.join(sorted(known))}}}")
    elif field.type == FieldDescriptor.TYPE_BYTES:
        if not (isinstance(ty, ListType) and isinstance(ty.element, U8)):
            raise _Mismatch(f"{where} is {render(ty)}, expected list<u8>")
    elif type(ty) is not _PROTO_SCALARS[field.type]:
        raise _Mismatch(f"{where} is {render(ty)}, expected {_PRIMITIVES[_PROTO_SCALARS[field.type]]}")


def _check_field(ty: ValType, field: FieldDescriptor, where: str) -> None:
    if is_map(field):
        key, value = message_type(field).fields_by_name["key"], map_value(field)
        if not (isinstance(ty, ListType) and isinstance(ty.element, TupleType) and len(ty.element.elements) == 2):
            raise _Mismatch(f"{where} is {render(ty)}, expected a list of (key, value) tuples")
        k, v = ty.element.elements
        _check_scalar(k, key, f"{where} key")
        _check_scalar(v, value, f"{where} value")
    elif is_repeated(field):
        if not isinstance(ty, ListType):
            raise _Mismatch(f"{where} is {render(ty)}, expected a list")
        _check_scalar(ty.element, field, f"{where} item")
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        if not isinstance(ty, OptionType):
            raise _Mismatch(f"{where} is {render(ty)}, expected option<record> for {message_type(field).full_name}")
        _check_scalar(ty.payload, field, where)
    else:
        _check_scalar(ty, field, where)


def _check_record(ty: ValType, message: Descriptor, where: str) -> None:
    if not isinstance(ty, RecordType):
        raise _Mismatch(f"{where} is {render(ty)}, expected a record for {message.full_name}")
    for name, field_ty in ty.fields:
        field = message.fields_by_name.get(name.replace("-", "_"))
        if field is None or kebab(field.name) != name:
            raise _Mismatch(f"{where} has field `{name}`, which {message.full_name} does not have")
        _check_field(field_ty, field, f"field `{name}`")


def _check_provider_error(ty: ValType | None) -> None:
    names = [n for n, _ in ty.fields] if isinstance(ty, RecordType) else None
    if names != ["code", "message"] or not all(isinstance(t, String) for _, t in ty.fields):  # type: ignore[union-attr]
        raise _Mismatch(f"its error type is {render(ty) if ty else 'missing'}, "
                        "expected provider-error {code: string, message: string}")


def _check_import_func(interface: str, version: str, name: str, ty: FuncType) -> None:
    if interface == "lattice":
        params = ty.params
        if name != "set-link-name":
            raise _Mismatch("the host's lattice interface has only `set-link-name`")
        if (len(params) != 2 or not isinstance(params[0][1], String) or not isinstance(params[1][1], ListType)
                or not isinstance(params[1][1].element, String) or ty.result is not None):
            raise _Mismatch(f"it is {render_func(ty)}, expected func(name: string, interfaces: list<string>)")
        return
    if interface == "log":
        params = ty.params
        if name != "log":
            raise _Mismatch("the host's log interface has only `log`")
        if (len(params) != 2 or not isinstance(params[0][1], EnumType) or not set(params[0][1].names) <= set(LOG_LEVELS)
                or not isinstance(params[1][1], String) or ty.result is not None):
            raise _Mismatch(f"it is {render_func(ty)}, expected func(level: level, message: string)")
        return
    op = OPERATIONS.get((interface, name))
    if op is None or not op.served_in(version):
        known = sorted(n for (i, n), o in OPERATIONS.items() if i == interface and o.served_in(version))
        since = f" (it is new in {op.since})" if op is not None else ""
        raise _Mismatch(f"{interface}@{version} has no function `{name}`{since} (it has {', '.join(known)})")
    params, result = ty.params, ty.result
    if len(params) != 1:
        raise _Mismatch(f"it takes {len(params)} parameters, expected one {op.request.DESCRIPTOR.name} record")
    _check_record(params[0][1], descriptor_of(op.request), "its parameter")
    if not isinstance(result, ResultType):
        raise _Mismatch(f"it returns {render(result) if result else 'nothing'}, expected result<..., provider-error>")
    if result.ok is None:
        raise _Mismatch(f"it returns {render(result)}, expected result<{op.reply.DESCRIPTOR.name}, provider-error>")
    _check_record(result.ok, descriptor_of(op.reply), "its result")
    _check_provider_error(result.err)


def _check_run(ty: object) -> None:
    ok = (isinstance(ty, FuncType) and [type(t) for _, t in ty.params] == [U64, String]
          and isinstance(ty.result, ResultType) and isinstance(ty.result.ok, String)
          and isinstance(ty.result.err, String))
    if not ok:
        shown = render_func(ty) if isinstance(ty, FuncType) else type(ty).__name__
        raise _Mismatch(f"its export `run` is {shown}, expected {RUN_SIGNATURE}")


def check_component(component: Component, engine: Engine, label: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Raise ComponentError unless ``component`` fits the world; return its import and export names."""
    ctype = component.type
    imports = ctype.imports(engine)
    exports = ctype.exports(engine)
    missing = sorted(name for name in imports if name not in _PROVIDED and not wasi_supplied(name))
    if missing:
        shown = " and ".join([", ".join(missing[:-1]), missing[-1]] if len(missing) > 1 else missing)
        raise ComponentError(
            f"{label} imports {shown}, which this host does not provide "
            f"(it provides {WIT_WORLD_IMPORTS} and {WASI_SUMMARY}): {advice(missing)}")
    for name, extern in imports.items():
        if name.startswith("wasi:"):
            continue  # the linker's WASI p2 checks their types at instantiation
        instance = extern.ty
        if not isinstance(instance, ComponentInstanceType):
            raise ComponentError(f"{label} imports {name} as a {type(instance).__name__}, expected an interface")
        interface, version = name.split("/", 1)[1].split("@", 1)
        for func_name, item in instance.exports(engine).items():
            ty = item.ty
            if isinstance(ty, FuncType):
                try:
                    _check_import_func(interface, version, func_name, ty)
                except _Mismatch as exc:
                    raise ComponentError(
                        f"{label} imports {interface}.{func_name} with a type this host does not serve: {exc}"
                    ) from None
    if "run" not in exports:
        raise ComponentError(f"{label} has no export `run` (it exports {', '.join(sorted(exports)) or 'nothing'}); "
                             f"a verse component exports run: {RUN_SIGNATURE}")
    try:
        _check_run(exports["run"].ty)
    except _Mismatch as exc:
        raise ComponentError(f"{label}: {exc}") from None
    return tuple(imports), tuple(exports)

