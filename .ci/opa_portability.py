#!/usr/bin/env python3
"""The OPA portability check: every decision a policy set's fixture cases and mutants made under
regorus (`cosigner-guard test --mutate --export-decisions FILE`) is decided again under OPA's own
Go evaluator (the `opa-golib-python-bindings` wheel) and must be the same.

Our builtins get the same answers on the OPA side: each call regorus made was recorded with its
arguments and result, and OPA's calls are answered from that record; `decimal.*` is computed
exactly in Python when OPA asks something regorus did not. A call neither can answer is a failure
of the check, never a guess.

    python3 .ci/opa_portability.py POLICY_DIR EXPORT.jsonl

Exit 0 when every decision agrees, 1 when one differs (each is printed), 2 when it cannot run.
"""

import json
import os
import re
import sys
from decimal import Decimal
from pathlib import Path

try:
    from opa_bindings import OpaEngine, OpaUndefinedError
except ImportError:
    print("opa_portability: the OPA bindings are not installed (opa-golib-python-bindings)", file=sys.stderr)
    sys.exit(2)

ENTRYPOINTS = {"transaction": "cosigner.transaction.decision", "config_change": "cosigner.config_change.decision"}
# Our builtins and their arity (src/policy/builtins.rs EXTENSIONS).
BUILTINS = {
    "decimal.valid": 1, "decimal.cmp": 2, "decimal.sum": 1, "decimal.to_units": 2, "decimal.from_number": 1,
    "velocity.sum": 2, "velocity.count": 2, "time.now_ns": 0, "eth.keccak256": 1, "btc.sha256d": 1,
    "eth.decode_tx": 1, "eth.decode_erc20": 1, "btc.decode_preimage": 2, "eth.valid_address": 1,
    "btc.valid_address": 2, "transfer.view": 2, "transfer.request": 2,
}


class Unanswerable(Exception):
    pass


current = {"calls": {}}


def key(args):
    return json.dumps(integral(args), sort_keys=True, separators=(",", ":"))


def integral(value):
    """A number is the same number whichever side wrote it: regorus records 10.0 as 10."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [integral(v) for v in value]
    if isinstance(value, dict):
        return {k: integral(v) for k, v in value.items()}
    return value


DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")


def dec(s):
    return Decimal(s) if isinstance(s, str) and DECIMAL.fullmatch(s) else None


def plain(d):
    text = format(d, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def decimal_fallback(name, args):
    """Exactly what our decimal builtins answer, for arguments regorus did not see."""
    if name == "decimal.valid":
        return dec(args[0]) is not None
    if name == "decimal.cmp":
        a, b = dec(args[0]), dec(args[1])
        return None if a is None or b is None else (a > b) - (a < b)
    if name == "decimal.sum":
        if not isinstance(args[0], list):
            return None
        values = [dec(x) for x in args[0]]
        fractions = [x.split(".")[1].rstrip("0") if isinstance(x, str) and "." in x else "" for x in args[0]]
        if any(v is None for v in values) or any(len(f) > 18 for f in fractions):
            return None
        return plain(sum(values, Decimal(0)))
    raise Unanswerable(f"{name}{tuple(args)} was not called by regorus and has no exact Python form")


def builtin(name):
    def answer(*args):
        args = list(args)
        recorded = current["calls"].get((name, key(args)))
        if recorded is not None:
            return recorded[0]
        if name.startswith("decimal."):
            return decimal_fallback(name, args)
        if current.get("unit") and name in ("velocity.sum", "velocity.count", "time.now_ns"):
            # A unit test: no ledger, as under regorus (an empty store, the clock).
            import time
            return {"velocity.sum": "0", "velocity.count": 0}.get(name, time.time_ns())
        raise Unanswerable(f"OPA called {name}({key(args)[1:-1]}), which regorus did not call")
    return answer


def files(root):
    """Every file of the set, symbolic links followed (the examples share the library)."""
    for folder, _, names in os.walk(root, followlinks=True):
        for name in sorted(names):
            yield Path(folder) / name


def load(engine, directory, data, tests=False):
    """The set's modules from disk (its `*_test.rego` too with `tests`); its data as the export
    says regorus held it (YAML included)."""
    root = Path(directory)
    for path in sorted(files(root)):
        if path.suffix == ".rego" and (tests or not path.name.endswith("_test.rego")):
            engine.add_policy(str(path.relative_to(root)), path.read_text())
    engine.add_data(data)
    for name, arity in BUILTINS.items():
        engine.register_function(name, builtin(name), arity=arity)


TEST_RULE = re.compile(r"^(test_[A-Za-z0-9_]+)\b", re.M)
PACKAGE = re.compile(r"^package\s+([A-Za-z0-9_.]+)", re.M)


def unit_tests(directory, data, recorded):
    """Every Rego unit test of the set under OPA (they all pass under regorus, or `test` fails):
    the ones calling a builtin that needs a recorded answer (eth.*, btc.*, transfer.*) cannot be
    judged here and are counted apart. Returns (passed, failed names, not judged)."""
    current["calls"] = {}
    passed, failed, unjudged = 0, [], 0
    with OpaEngine() as engine:
        load(engine, directory, data, tests=True)
        for path in sorted(p for p in files(Path(directory)) if p.name.endswith("_test.rego")):
            text = path.read_text()
            package = PACKAGE.search(text).group(1)
            for name in sorted(set(TEST_RULE.findall(text))):
                calls = recorded.get(f"data.{package}.{name}", [])
                current["calls"] = {(c["name"], key(c["args"])): (c["result"],) for c in calls}
                current["unit"] = True
                try:
                    result = engine.eval_document(f"{package}.{name}")
                except OpaUndefinedError:
                    result = "undefined"
                except Exception as error:
                    if "Unanswerable" in repr(error) or "regorus did not call" in str(error) or "no exact Python form" in str(error):
                        unjudged += 1
                        continue
                    result = f"error: {error}"
                if result is True:
                    passed += 1
                else:
                    failed.append(f"{package}.{name}: {result}")
    return passed, failed, unjudged
    for name, arity in BUILTINS.items():
        engine.register_function(name, builtin(name), arity=arity)


def normalized_records(records):
    out = []
    for r in records or []:
        amount = dec(r.get("amount")) if isinstance(r, dict) else None
        out.append((r.get("key") if isinstance(r, dict) else None, plain(amount) if amount is not None else r))
    return sorted(out, key=repr)


def compare(line, engine):
    """None when both engines agree (or the answer was not the policy's), else why not."""
    source = line["source"]
    try:
        opa = engine.eval_document(ENTRYPOINTS[line["kind"]], line["input"])
    except OpaUndefinedError:
        opa = "undefined"
    except Unanswerable:
        raise
    except Exception as error:  # an evaluation error under OPA
        opa = f"error: {error}"
    if source == "fallback:undefined":
        return None if opa == "undefined" else f"regorus: undefined; OPA: {opa}"
    if source == "fallback:eval_error":
        return None if str(opa).startswith("error") else f"regorus: an evaluation error; OPA: {opa}"
    if source != "policy":
        return None  # the hold gate, the guards, the state store: not the policy's answer
    if not isinstance(opa, dict):
        return f"regorus: {line['action']} {line['reason']!r}; OPA: {opa}"
    mine = (line["action"], line["reason"], normalized_records(line["records"]))
    theirs = (opa.get("action"), opa.get("reason"), normalized_records(opa.get("record")))
    return None if mine == theirs else f"regorus: {mine}; OPA: {theirs}"


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    directory, export = sys.argv[1], sys.argv[2]
    decided, differing, skipped = 0, [], 0
    lines = Path(export).read_text().splitlines()
    with OpaEngine() as engine:
        load(engine, directory, json.loads(lines[0])["data"])
        for number, text in enumerate(lines[1:], 2):
            line = json.loads(text)
            if "test" in line:
                continue
            current["calls"] = {(c["name"], key(c["args"])): (c["result"],) for c in line["calls"]}
            try:
                why = compare(line, engine)
            except Unanswerable as error:
                differing.append(f"{line['case']} (line {number}): cannot answer: {error}")
                continue
            decided += 1
            if line["source"] not in ("policy", "fallback:undefined", "fallback:eval_error"):
                skipped += 1
            if why:
                differing.append(f"{line['case']} (line {number}): {why}")
    tests = {line["test"]: line["calls"] for line in map(json.loads, lines[1:]) if "test" in line}
    current["unit"] = False
    passed, failed, unjudged = unit_tests(directory, json.loads(lines[0])["data"], tests)
    for difference in differing:
        print(f"DIFFERENT  {difference}")
    for test in failed:
        print(f"FAILS UNDER OPA  {test}")
    print(f"opa_portability: {directory}: {decided} decisions, {len(differing)} different, "
          f"{skipped} answered by the handler, not the policy; unit tests under OPA: {passed} pass, "
          f"{len(failed)} fail, {unjudged} need a recorded builtin (not judged)")
    return 1 if differing or failed else 0


if __name__ == "__main__":
    sys.exit(main())
