#!/usr/bin/python3
"""JSON Schema -> GBNF (bc_json_schema_to_gbnf, `baichuan grammar`).

For a suite of schemas that together use every supported keyword, random JSON
instances (valid ones from a generator, invalid ones from mutating them) are
serialized with several whitespace styles and given to
`baichuan grammar --json-schema S --match`; the answer must be `complete`
exactly when Debian's python3-jsonschema (Draft 2020-12, with format checks
written here) says the instance is valid. The same texts also go through an
independent GBNF matcher in Python (gbnf_ref.py) on the `--print` output, so
the grammar itself is checked apart from the engine that runs it.

The documented deviations from JSON Schema are part of the contract and are
restated here: properties appear in the order of `properties` with extra keys
after them, an integer is written without fraction or exponent, a bounded
number without exponent, strings in const/enum/keys as json.dumps writes them
(ensure_ascii=False), oneOf as anyOf (the suite's oneOf branches are
disjoint), and whitespace between tokens is at most one newline and 20 spaces
or tabs, none around the whole text.

Then the refusals: every unsupported keyword names itself and its path,
malformed JSON names its line and column, and schemas too deep or too large
fail fast with a message, not a crash.
"""
import argparse
import copy
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile

import jsonschema

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gbnf_ref  # noqa: E402

# ---------------------------------------------------------------------------
# The oracle: Draft 2020-12 with an integer that is a Python int (not 1.0)
# and format checkers written from RFC 3339 and RFC 4122 here.
# ---------------------------------------------------------------------------

DAYS = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}
TIME_RE = re.compile(r"([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)\Z")
DATE_RE = re.compile(r"(\d{4})-(\d\d)-(\d\d)\Z")
EMAIL_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
EMAIL_RE = re.compile(r"%s(\.%s)*@[A-Za-z0-9][A-Za-z0-9-]*(\.[A-Za-z0-9][A-Za-z0-9-]*)+\Z" % (EMAIL_ATOM, EMAIL_ATOM))
UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")


def is_date(s):
    m = DATE_RE.match(s)
    return bool(m) and 1 <= int(m.group(2)) <= 12 and 1 <= int(m.group(3)) <= DAYS[int(m.group(2))]


def is_time(s):
    return bool(TIME_RE.match(s))


def is_date_time(s):
    return len(s) > 11 and s[10] in "Tt" and is_date(s[:10]) and is_time(s[11:])


FORMATS = jsonschema.FormatChecker(formats=())
for _name, _fn in (("date", is_date), ("time", is_time), ("date-time", is_date_time),
                   ("email", lambda s: bool(EMAIL_RE.match(s))), ("uuid", lambda s: bool(UUID_RE.match(s)))):
    FORMATS.checks(_name)(lambda s, fn=_fn: not isinstance(s, str) or fn(s))

TYPES = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda checker, v: isinstance(v, int) and not isinstance(v, bool))


def ecma_pattern(validator, pattern, instance, schema):
    """pattern as ECMA 262 reads it where Python's re differs: $ only at the
    very end (not before a final newline), \\d \\w \\s ASCII (the texts hold no
    non-ASCII space, no \\r and no U+2028, where . and \\s differ too)."""
    if not isinstance(instance, str):
        return
    p = pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith("\\$") else pattern
    if not re.search(p, instance, re.ASCII):
        yield jsonschema.ValidationError("%r does not match %r" % (instance, pattern))


Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=TYPES,
                                         validators={"pattern": ecma_pattern})


def valid(schema, instance):
    return Validator(schema, format_checker=FORMATS).is_valid(instance)


# ---------------------------------------------------------------------------
# The suite: (name, schema, {pattern: sample strings}) covering every keyword.
# ---------------------------------------------------------------------------

PERSON = {
    "$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "https://example.com/person.json",
    "title": "person", "description": "a person", "$comment": "annotations only",
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 12, "readOnly": True, "writeOnly": False},
        "age": {"type": "integer", "minimum": 0, "maximum": 150, "default": 30, "examples": [1]},
        "email": {"type": "string", "format": "email"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "minItems": 1, "maxItems": 3},
        "role": {"enum": ["admin", "user", "guest \"q\""], "deprecated": True},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}

TREE = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "value": {"type": "integer"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 3},
            },
            "required": ["value"],
            "additionalProperties": False,
        }
    },
    "$ref": "#/$defs/node",
}

SUITE = [
    ("true", True, {}),
    ("empty", {}, {}),
    ("person", PERSON, {}),
    ("tree", TREE, {}),
    ("linked_list", {
        "definitions": {"item": {"type": "object", "properties": {
            "v": {"type": "string"}, "next": {"anyOf": [{"$ref": "#/definitions/item"}, {"type": "null"}]}},
            "required": ["v", "next"], "additionalProperties": False}},
        "$ref": "#/definitions/item"}, {}),
    ("recursive_root", {"type": ["array", "integer"], "items": {"$ref": "#"}, "maxItems": 2,
                        "minimum": -3, "maximum": 3}, {}),
    ("types_list", {"type": ["string", "null", "boolean"]}, {}),
    ("open_object", {"type": "object", "properties": {"a": {"type": "integer"}, "ab": {"type": "string"}}}, {}),
    ("extra_schema", {"type": "object", "properties": {"id": {"type": "integer"}},
                      "additionalProperties": {"type": "boolean"}}, {}),
    ("extra_true", {"type": "object", "properties": {"k": {"const": 1}}, "required": ["k"],
                    "additionalProperties": True}, {}),
    ("all_optional", {"type": "object", "properties": {"a": {"type": "null"}, "b": {"type": "boolean"},
                                                        "c": {"type": "integer"}}, "additionalProperties": False}, {}),
    ("required_middle", {"type": "object", "properties": {"a": {"type": "null"}, "b": {"type": "boolean"},
                                                           "c": {"type": "string"}},
                         "required": ["b"], "additionalProperties": False}, {}),
    ("integer_range", {"type": "integer", "minimum": -1234, "maximum": 98765}, {}),
    ("integer_exclusive", {"type": "integer", "exclusiveMinimum": 9, "exclusiveMaximum": 101}, {}),
    ("integer_min_only", {"type": "integer", "minimum": 37}, {}),
    ("integer_max_only", {"type": "integer", "maximum": -5}, {}),
    ("integer_fractional_bounds", {"type": "integer", "minimum": -2.5, "maximum": 7.5}, {}),
    ("number", {"type": "number"}, {}),
    ("number_range", {"type": "number", "minimum": -10, "exclusiveMaximum": 20}, {}),
    ("number_exclusive", {"type": "number", "exclusiveMinimum": 0, "maximum": 1}, {}),
    ("number_negative", {"type": "number", "exclusiveMinimum": -100, "exclusiveMaximum": -3}, {}),
    ("number_fractional", {"type": "number", "minimum": -2.5, "exclusiveMaximum": 3.75}, {}),
    ("number_fractional_small", {"type": "number", "exclusiveMinimum": 0.05, "maximum": 0.125}, {}),
    ("number_fractional_min", {"type": ["number", "null"], "minimum": 0.1}, {}),
    ("number_fractional_max", {"type": "number", "exclusiveMaximum": -0.001, "minimum": -1000}, {}),
    ("number_one_interval", {"type": "number", "minimum": 7.25, "maximum": 7.5}, {}),
    ("string_lengths", {"type": "string", "minLength": 2, "maxLength": 5}, {}),
    ("string_min", {"type": "string", "minLength": 3}, {}),
    ("formats", {"type": "array", "prefixItems": [
        {"type": "string", "format": "date-time"}, {"type": "string", "format": "date"},
        {"type": "string", "format": "time"}, {"type": "string", "format": "email"},
        {"type": "string", "format": "uuid"}], "items": False, "minItems": 5}, {}),
    ("pattern_anchored", {"type": "string", "pattern": "^[A-Z]{2}-\\d{3,4}(\\.[a-z]+)?$"},
     {"^[A-Z]{2}-\\d{3,4}(\\.[a-z]+)?$": ["AB-123", "XY-9876.abc", "QQ-000.z", "AB-12", "ab-123", "AB-123.",
                                          "AB-12345"]}),
    ("pattern_search", {"type": "string", "pattern": "a(b|cd)*e"},
     {"a(b|cd)*e": ["ae", "xxabcde", "abbbe!", "acde", "ace", "abc", "zzz", "eab"]}),
    ("pattern_classes", {"type": "string", "pattern": "^[^\\s\"]+\\s?[\\w.]*\\\\?$"},
     {"^[^\\s\"]+\\s?[\\w.]*\\\\?$": ["abc", "a b.c\\", "x\ty", "\u00e9t\u00e9 x", "a\"b", "a  b", "", "q \\\\"]}),
    ("pattern_quantifiers", {"type": "string", "pattern": "^(?:ab){2}c+?d*x?.{0,3}$"},
     {"^(?:ab){2}c+?d*x?.{0,3}$": ["ababc", "ababccdddx\u4e2d\u6587!", "abc", "ababcddx1234", "ababc\"\\",
                                   "abab"]}),
    ("enum_mixed", {"enum": ["red", 42, 2.5, None, True, [1, "a"], {"k": [False]}]}, {}),
    ("enum_typed", {"type": "string", "enum": ["a", "b", 3]}, {}),
    ("const_object", {"const": {"a": [1, 2], "b": "x\ny"}}, {}),
    ("array_bounds", {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9},
                      "minItems": 2, "maxItems": 4}, {}),
    ("array_any", {"type": "array"}, {}),
    ("prefix_items", {"type": "array", "prefixItems": [{"type": "string"}, {"type": "boolean"}],
                      "items": {"type": "null"}, "maxItems": 4}, {}),
    ("prefix_min", {"type": "array", "prefixItems": [{"const": 1}, {"const": 2}, {"const": 3}],
                    "minItems": 2}, {}),
    ("any_of", {"anyOf": [{"type": "integer", "minimum": 10}, {"type": "string", "maxLength": 2},
                          {"type": "object", "properties": {"z": {"type": "null"}}, "required": ["z"],
                           "additionalProperties": False}]}, {}),
    ("one_of", {"oneOf": [{"type": "boolean"}, {"type": "array", "maxItems": 1}]}, {}),
    ("all_of", {"allOf": [{"type": "object", "properties": {"q": {"type": "integer"}}, "required": ["q"]}]}, {}),
    ("untyped_keywords", {"minimum": 5, "maxLength": 2, "required": ["a"], "properties": {"a": {}}}, {}),
    ("forbidden_property", {"type": "object", "properties": {"a": {"type": "integer"}, "secret": False,
                                                              "b": {"type": "null"}}, "required": ["b"]}, {}),
    ("keys_escaped", {"type": "object", "properties": {"say \"hi\"": {"type": "integer"}, "tab\tkey": {},
                                                        "\u00fcber": {"type": "boolean"}},
                      "additionalProperties": False}, {}),
]

# ---------------------------------------------------------------------------
# Instances: a generator of mostly valid ones, and mutations.
# ---------------------------------------------------------------------------

ALPHABET = list("abcxyzAB019 -_.") + ["\"", "\\", "/", "\n", "\t", "\u00e9", "\u4e2d", "\U0001f600", "\x01"]


def rand_string(rng, lo=0, hi=None):
    n = rng.randint(lo, hi if hi is not None else lo + 6)
    return "".join(rng.choice(ALPHABET) for _ in range(n))


def rand_value(rng, depth=0):
    kinds = ["int", "float", "str", "bool", "null"] + (["arr", "obj"] if depth < 2 else [])
    k = rng.choice(kinds)
    if k == "int":
        return rng.randint(-200, 200)
    if k == "float":
        return rng.randint(-200, 200) + 0.5
    if k == "str":
        return rand_string(rng, 0, 4)
    if k == "bool":
        return rng.random() < 0.5
    if k == "null":
        return None
    if k == "arr":
        return [rand_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {"x%d" % i: rand_value(rng, depth + 1) for i in range(rng.randint(0, 2))}


def resolve(root, ref):
    node = root
    for seg in ref[1:].split("/")[1:]:
        node = node[seg.replace("~1", "/").replace("~0", "~")]
    return node


def gen_format(rng, fmt):
    date = "%04d-%02d-%02d" % (rng.randint(0, 9999), rng.randint(1, 12), rng.randint(1, 28))
    tm = "%02d:%02d:%02d%s%s" % (rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 60),
                                 rng.choice(["", ".5", ".123"]), rng.choice(["Z", "z", "+05:30", "-12:00"]))
    if fmt == "date":
        return date
    if fmt == "time":
        return tm
    if fmt == "date-time":
        return date + rng.choice("Tt") + tm
    if fmt == "email":
        return rng.choice(["a", "x.y", "o'k+1"]) + "@" + rng.choice(["ex.com", "a-b.c.org"])
    return "-".join("".join(rng.choice("0123456789abcdefABCDEF") for _ in range(n)) for n in (8, 4, 4, 4, 12))


def gen(rng, root, s, samples, depth=0):
    if s is True or s == {}:
        return rand_value(rng)
    if "$ref" in s:
        return gen(rng, root, resolve(root, s["$ref"]), samples, depth + 1)
    for kw in ("anyOf", "oneOf", "allOf"):
        if kw in s:
            return gen(rng, root, rng.choice(s[kw]), samples, depth + 1)
    if "const" in s:
        return copy.deepcopy(s["const"])
    if "enum" in s:
        return copy.deepcopy(rng.choice(s["enum"]))
    types = s.get("type", ["object", "array", "string", "integer", "null", "boolean"])
    t = rng.choice(types) if isinstance(types, list) else types
    if depth > 4 and t in ("object", "array") and isinstance(types, list) and len(types) > 1:
        t = rng.choice([x for x in types if x not in ("object", "array")] or [t])
    if t == "null":
        return None
    if t == "boolean":
        return rng.random() < 0.5
    if t in ("integer", "number"):
        lo = s.get("minimum", s.get("exclusiveMinimum", -1000))
        hi = s.get("maximum", s.get("exclusiveMaximum", lo + 2000))
        x = rng.randint(int(lo) - 1, int(hi) + 1)
        if t == "number" and rng.random() < 0.3:  # on or next to a bound
            return round(rng.choice([lo, hi]) + rng.choice([0, 0, 0.001, -0.001, 0.0001, -0.01]), 4)
        if t == "number" and rng.random() < 0.6:
            return round(x + rng.choice([0.0, 0.001, 0.05, 0.1, 0.125, 0.25, 0.5, 0.75, 0.999]), 4)
        return x
    if t == "string":
        if "format" in s:
            return gen_format(rng, s["format"])
        if "pattern" in s:
            return rng.choice(samples[s["pattern"]])
        lo = s.get("minLength", 0)
        return rand_string(rng, lo, s.get("maxLength", lo + 6))
    if t == "array":
        prefix = s.get("prefixItems", [])
        lo = s.get("minItems", 0)
        hi = s.get("maxItems", max(lo, len(prefix)) + 2)
        if s.get("items") is False:
            hi = min(hi, len(prefix))
        n = rng.randint(lo, max(lo, hi)) if depth < 4 else lo
        items = s.get("items", True)
        return [gen(rng, root, prefix[i] if i < len(prefix) else items, samples, depth + 1) for i in range(n)]
    out = {}
    req = s.get("required", [])
    for k, sub in s.get("properties", {}).items():
        if sub is False:  # forbidden: now and then present all the same
            if rng.random() < 0.2:
                out[k] = rand_value(rng)
            continue
        if k in req or rng.random() < 0.5:
            out[k] = gen(rng, root, sub, samples, depth + 1)
    extra = s.get("additionalProperties", True)
    if extra is not False and rng.random() < 0.4:
        for i in range(rng.randint(1, 2)):
            out["extra%d" % i] = gen(rng, root, extra, samples, depth + 1) if extra is not True else rand_value(rng)
    return out


def nodes(v, path=()):
    yield path, v
    if isinstance(v, dict):
        for k, x in v.items():
            yield from nodes(x, path + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from nodes(x, path + (i,))


def replace_at(v, path, new):
    if not path:
        return new
    v = copy.deepcopy(v)
    node = v
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = new
    return v


def mutate(rng, v, samples):
    path, node = rng.choice(list(nodes(v)))
    r = rng.random()
    if isinstance(node, dict) and node and r < 0.3:
        k = rng.choice(list(node))
        node = dict(node)
        del node[k]
        return replace_at(v, path, node)
    if isinstance(node, dict) and r < 0.5:
        node = dict(node)
        node["zz%d" % rng.randint(0, 9)] = rand_value(rng, 2)
        return replace_at(v, path, node)
    if isinstance(node, list) and r < 0.5:
        node = list(node)
        if node and rng.random() < 0.5:
            node.pop(rng.randrange(len(node)))
        else:
            node.append(rand_value(rng, 2) if rng.random() < 0.5 or not node else copy.deepcopy(node[0]))
        return replace_at(v, path, node)
    if isinstance(node, str) and r < 0.7:
        pool = [s for ss in samples.values() for s in ss]
        choices = [node + rng.choice(ALPHABET), node[1:], node[:-1], rand_string(rng, 0, 3)]
        if pool:
            choices.append(rng.choice(pool))
        if len(node) > 3:
            i = rng.randrange(len(node))
            choices.append(node[:i] + rng.choice("09aZ:-T.@") + node[i + 1:])
        return replace_at(v, path, rng.choice(choices))
    if isinstance(node, bool) or node is None:
        return replace_at(v, path, rand_value(rng))
    if isinstance(node, (int, float)) and r < 0.7:
        return replace_at(v, path, rng.choice([node + 1, node - 1, node + 0.5, -node, node * 10, 0]))
    return replace_at(v, path, rand_value(rng))


STYLES = [
    lambda v: json.dumps(v, ensure_ascii=False, separators=(",", ":")),
    lambda v: json.dumps(v, ensure_ascii=False),
    lambda v: json.dumps(v, ensure_ascii=False, indent=2),
    lambda v: json.dumps(v, ensure_ascii=False, indent="\t"),
    lambda v: json.dumps(v, ensure_ascii=False, indent=1, separators=(" ,", " : ")),
]

# ---------------------------------------------------------------------------
# The binary
# ---------------------------------------------------------------------------


class Tally:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, name, ok, detail=""):
        print("%s %s%s" % ("PASS" if ok else "FAIL", name, "" if ok or not detail else " " + detail), flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        return ok


def grammar(binary, *args, stdin=None):
    return subprocess.run([binary, "grammar", *args], capture_output=True, text=True, input=stdin, timeout=60)


def write(tmp, name, text):
    path = os.path.join(tmp, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def check_suite(binary, tmp, tally, rng, per_schema):
    for name, schema, samples in SUITE:
        path = write(tmp, name + ".json", json.dumps(schema, ensure_ascii=False))
        r = grammar(binary, "--json-schema", path, "--print")
        if not tally.check("%s: converts" % name, r.returncode == 0, r.stderr.strip()):
            continue
        try:
            ref = gbnf_ref.Grammar(r.stdout)
        except (ValueError, IndexError) as e:
            tally.check("%s: GBNF reads back" % name, False, str(e))
            continue
        cases, seen = [], set()
        for _ in range(20 * per_schema):
            if len(cases) == per_schema:
                break
            v = gen(rng, schema, schema, samples)
            for _ in range(rng.randint(1, 3) if len(cases) % 2 else 0):
                v = mutate(rng, v, samples)
            text = rng.choice(STYLES)(v)
            if text not in seen:
                seen.add(text)
                cases.append((text, valid(schema, v)))
        # Texts for the patterns' own samples, each whole.
        if isinstance(schema, dict) and "pattern" in schema:
            for sample in samples[schema["pattern"]]:
                cases.append((json.dumps(sample, ensure_ascii=False), valid(schema, sample)))
        bad_engine, bad_ref = [], []
        for text, want in cases:
            m = grammar(binary, "--json-schema", path, "--match", stdin=text)
            got = m.stdout.strip()
            if (got == "complete") != want or (m.returncode == 0) != (got in ("complete", "prefix")):
                bad_engine.append((text, want, got, m.stderr.strip()[:200]))
            if ref.complete(text) != want:
                bad_ref.append((text, want))
        n_valid = sum(1 for _, w in cases if w)
        tally.check("%s: %d texts (%d valid) through --match agree with jsonschema" % (name, len(cases), n_valid),
                    not bad_engine, "first disagreements: %r" % bad_engine[:3])
        tally.check("%s: the same texts through the GBNF reference matcher" % name, not bad_ref,
                    "first disagreements: %r" % bad_ref[:3])
        tally.check("%s: both valid and invalid texts were tried" % name,
                    n_valid > 0 and (n_valid < len(cases) or schema in (True, {})),
                    "%d of %d valid" % (n_valid, len(cases)))


def check_whitespace(binary, tmp, tally):
    path = write(tmp, "ws.json", json.dumps({"type": "array", "items": {"type": "integer"}}))
    cases = [("[1,%s2]" % (" " * 20), "complete"), ("[1,%s2]" % (" " * 21), "no"), ("[1,\n\t 2]", "complete"),
             ("[1,\n\n2]", "no"), (" [1]", "no"), ("[1] ", "no"), ("[1,", "prefix"), ("[", "prefix"),
             ("", "prefix"), ("[1]]", "no")]
    for text, want in cases:
        m = grammar(binary, "--json-schema", path, "--match", stdin=text)
        tally.check("whitespace %r: %s" % (text, want), m.stdout.strip() == want and
                    m.returncode == (1 if want == "no" else 0), "got %r rc %d %s" % (m.stdout, m.returncode, m.stderr))


def check_json_object(binary, tally):
    for text, want in [('{"a": [1, {"b": null}]}', "complete"), ("{}", "complete"), ("[]", "no"), ('"x"', "no"),
                       ('{"a" 1}', "no")]:
        m = grammar(binary, "--json", "--match", stdin=text)
        tally.check("--json %r: %s" % (text, want), m.stdout.strip() == want, m.stdout + m.stderr)


UNSUPPORTED = ["patternProperties", "not", "if", "then", "else", "dependentRequired", "dependentSchemas",
               "uniqueItems", "multipleOf", "contains", "minContains", "propertyNames", "minProperties",
               "maxProperties", "unevaluatedProperties", "unevaluatedItems", "$anchor", "$dynamicRef", "nullable"]


def child_cpu_s():
    """CPU seconds the finished child processes have used so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def refused(binary, tmp, tally, name, schema_text, *needles, limit_s=2.0):
    """The schema is refused on one line naming the file and the needles,
    within limit_s of the CLI's CPU time (not the wall clock, which a loaded
    machine stretches): a refusal comes before any large compilation."""
    path = write(tmp, "bad.json", schema_text)
    c0 = child_cpu_s()
    r = grammar(binary, "--json-schema", path, "--print")
    dt = child_cpu_s() - c0
    lines = r.stderr.strip().split("\n")
    ok = (r.returncode == 1 and r.stdout == "" and len(lines) == 1 and path in lines[0] and dt < limit_s
          and all(n in lines[0] for n in needles))
    tally.check("refused: %s (%.2f CPU s)" % (name, dt), ok,
                "rc %d stderr %r want %r" % (r.returncode, r.stderr, needles))


def check_refusals(binary, tmp, tally):
    for kw in UNSUPPORTED:
        schema = {"type": "object", "properties": {"list": {"type": "array", "items": {"type": "string", kw: {}}}}}
        refused(binary, tmp, tally, "keyword " + kw, json.dumps(schema),
                "unsupported keyword '%s'" % kw, "/properties/list/items")
    refused(binary, tmp, tally, "malformed JSON", '{\n  "type": "object",\n  "properties": {,}\n}',
            "malformed", "line 3", "column 18")
    refused(binary, tmp, tally, "not JSON at all", "type: object", "malformed", "line 1")
    deep = '{"items":' * 10000 + "{}" + "}" * 10000
    refused(binary, tmp, tally, "10,000-deep nesting", deep, "line 1", "depth")
    deep = '{"type":"array","items":' * 100 + "{}" + "}" * 100
    refused(binary, tmp, tally, "100-deep schemas", deep, "nested deeper than 64", "/items/items")
    refused(binary, tmp, tally, "huge enum", json.dumps({"enum": list(range(100000))}),
            "'enum' of 100000 values", "limit of 1000")
    refused(binary, tmp, tally, "enum past 1 MiB of grammar", json.dumps({"enum": ["x" * 5000 + str(i) for i in
                                                                                   range(1000)]}),
            "passes the limit of 1048576 bytes", "/enum")
    many = {"type": "object", "properties": {"p%d" % i: {"enum": ["v" * 300 + str(j) for j in range(10)]}
                                             for i in range(900)}}
    refused(binary, tmp, tally, "many large properties", json.dumps(many), "limit of 60000 elements")
    lengths = {"type": "object", "properties": {"p%d" % i: {"type": "string", "maxLength": 900 + i} for i in range(30)}}
    refused(binary, tmp, tally, "repetitions past the engine's element limit", json.dumps(lengths),
            "limit of 60000 elements", "/properties/p1")
    # Large schemas inside the limits convert to grammars the engine compiles.
    for name, schema, text in [
            ("400 required properties", {"type": "object", "properties": {
                "prop%d" % i: {"type": "integer"} for i in range(400)}, "required": ["prop%d" % i for i in range(400)],
                "additionalProperties": False}, json.dumps({"prop%d" % i: i for i in range(400)})),
            ("200 properties, every 50th required, extra keys allowed",
             {"type": "object", "properties": {"prop%d" % i: {"type": "integer"} for i in range(200)},
              "required": ["prop%d" % i for i in range(0, 200, 50)]},
             '{"prop0": 1, "prop50": 2, "prop64": 0, "prop100": 3, "prop150": 4, "prop": 2, "prop70x": 3}'),
            ("64 optional properties and extra keys",
             {"type": "object", "properties": {"prop%d" % i: {"type": "integer"} for i in range(64)}},
             json.dumps({"prop0": 1, "prop63": 2, "zz": 3}, indent=20)),
            ("32 anyOf objects told apart by their last property", {"anyOf": [
                {"type": "object", "properties": {"v": {"type": "array", "items": {"type": "integer"}},
                                                  "kind": {"const": "k%d" % i}},
                 "required": ["v", "kind"], "additionalProperties": False} for i in range(32)]},
             json.dumps({"v": list(range(100)), "kind": "k31"}, indent=2)),
            ("enum of 1000 numbers", {"type": "array", "items": {"enum": list(range(999)) + [2.5]}},
             "[1, 998, 100, 2.5, 0, 10]"),
            ("14 strings of maxLength 900+", {"type": "object", "properties": {
                "p%d" % i: {"type": "string", "maxLength": 900 + i} for i in range(14)}}, '{"p3": "%s"}' % ("x" * 903)),
            ("enum of 1000 strings", {"enum": ["v" * 40 + str(i) for i in range(1000)]}, '"%s999"' % ("v" * 40))]:
        path = write(tmp, "large.json", json.dumps(schema))
        m = grammar(binary, "--json-schema", path, "--match", stdin=text)
        tally.check("large schema compiles and matches: %s" % name, m.stdout.strip() == "complete", m.stderr)
    refused(binary, tmp, tally, "65 optional properties in a row",
            json.dumps({"properties": {"x": {"properties": {"p%d" % i: {} for i in range(70)}}}}),
            "more than 64 optional properties in a row", "'p64'", "/properties/x")
    refused(binary, tmp, tally, "anyOf of 33 schemas", json.dumps({"items": {"anyOf": [{"const": i} for i in range(33)]}}),
            "1 to 32 schemas", "/items")
    refused(binary, tmp, tally, "dangling $ref", json.dumps({"$ref": "#/$defs/missing"}),
            "'#/$defs/missing' names nothing", "at /")
    refused(binary, tmp, tally, "remote $ref", json.dumps({"$ref": "https://example.com/s.json"}), "not local")
    refused(binary, tmp, tally, "left recursion",
            json.dumps({"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}, {"type": "null"}]}}, "$ref": "#/$defs/a"}),
            "recurses without consuming", "/$defs/a/anyOf/0")
    refused(binary, tmp, tally, "unknown type", json.dumps({"properties": {"x": {"type": "int"}}}),
            "unknown type 'int'", "/properties/x/type")
    refused(binary, tmp, tally, "unknown format", json.dumps({"type": "string", "format": "ipv4"}),
            "unsupported format 'ipv4'", "/format")
    refused(binary, tmp, tally, "lookahead", json.dumps({"type": "string", "pattern": "^(?=a)b$"}),
            "lookaround", "/pattern")
    refused(binary, tmp, tally, "backreference", json.dumps({"type": "string", "pattern": "(a)\\1"}),
            "backreferences", "/pattern")
    refused(binary, tmp, tally, "regex repeat over 1000", json.dumps({"type": "string", "pattern": "^a{2000}$"}),
            "over 1000")
    refused(binary, tmp, tally, "maxLength over 1000", json.dumps({"type": "string", "maxLength": 5000}),
            "'maxLength' 5000", "limit of 1000")
    refused(binary, tmp, tally, "a bound with no exact decimal form",
            json.dumps({"properties": {"x": {"type": "number", "minimum": 1e-20}}}), "no exact decimal form",
            "/properties/x")
    refused(binary, tmp, tally, "empty integer range", json.dumps({"type": "integer", "minimum": 3, "maximum": 2}),
            "no integer")
    refused(binary, tmp, tally, "required but not declared",
            json.dumps({"type": "object", "properties": {}, "required": ["a"]}), "'a' is not in 'properties'",
            "/required/0")
    refused(binary, tmp, tally, "allOf of two", json.dumps({"allOf": [{}, {}]}), "'allOf' of more than one")
    refused(binary, tmp, tally, "anyOf beside type", json.dumps({"type": "string", "anyOf": [{}, {}]}),
            "'anyOf' together with 'type'")
    refused(binary, tmp, tally, "false schema", json.dumps({"anyOf": [{"type": "null"}, False]}), "false",
            "/anyOf/1")
    refused(binary, tmp, tally, "a required property with the schema false",
            json.dumps({"properties": {"a": False}, "required": ["a"]}), "false", "/properties/a")
    r = grammar(binary)
    tally.check("no grammar given: exit 1 naming the options", r.returncode == 1 and "--json-schema" in r.stderr,
                r.stderr)
    path = write(tmp, "ab.gbnf", 'root ::= "a" b+  # a comment\nb ::= [b-c]\n')
    for text, want in [("abcb", "complete"), ("a", "prefix"), ("ad", "no")]:
        m = grammar(binary, "--grammar-file", path, "--match", stdin=text)
        tally.check("--grammar-file %r: %s" % (text, want), m.stdout.strip() == want, m.stdout + m.stderr)
    path = write(tmp, "bad.gbnf", 'root ::= "a" (\n')
    r = grammar(binary, "--grammar-file", path)
    tally.check("a GBNF syntax error names the file", r.returncode == 1 and path in r.stderr, r.stderr)
    r = grammar(binary, "--json-schema", os.path.join(tmp, "absent.json"), "--print")
    tally.check("a missing file is named", r.returncode == 1 and "absent.json" in r.stderr, r.stderr)
    r = grammar(binary, "--json-schema", write(tmp, "empty.json", ""), "--print")
    tally.check("an empty schema file is refused", r.returncode == 1 and "empty.json" in r.stderr, r.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--per-schema", type=int, default=24)
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    tally = Tally()
    rng = random.Random(a.seed)
    r = grammar(a.bin, "--help")
    tally.check("grammar --help", r.returncode == 0 and "--json-schema" in r.stdout, r.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        check_refusals(a.bin, tmp, tally)
        check_suite(a.bin, tmp, tally, rng, a.per_schema)
        check_whitespace(a.bin, tmp, tally)
        check_json_object(a.bin, tally)
    print("%d passed, %d failed" % (tally.passed, tally.failed), flush=True)
    return 0 if tally.failed == 0 and tally.passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
