"""The selection post-processor: globs on keys, one provider per missing
requirement (preferred, else lowest priority value, then key), --no-deps."""

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pexen.factory import SelectionError, resolve_deps, select_tasks
from pexen.sched import Sched
from pexen.sched.meta import assign_val
from pexen.util import PexenWarning


def task(key, **meta):
    def fn():
        return key
    fn.__name__ = fn.__qualname__ = key.replace("/", "_")
    fn.pexen_factory_callpath_ = key.split("/")
    if meta:
        assign_val(fn, **meta)
    return fn


def catalogue():
    return [
        task("mail/exim", provides=["mta"], priority=5),
        task("mail/postfix", provides=["mta"], priority=5),
        task("mail/sendmail", provides=["mta"], priority=9),
        task("mail/send", requires=["mta"]),
        task("mail/relay", requires=["mta", "net"]),
        task("net/up", provides=["net"]),
        task("net/ping", requires=["net"]),
        task("disk/fsck"),
    ]


def test_globs_pick_keys_and_directories():
    sel = select_tasks(catalogue(), select=["net"], exclude=["net/up"], deps=False)
    assert sel.selected == ["net/ping"]
    sel = select_tasks(catalogue(), select=["*/p*"])
    assert sel.selected == ["mail/postfix", "net/ping"]
    assert select_tasks(catalogue(), select=["disk/*"]).keys == ["disk/fsck"]
    assert len(select_tasks(catalogue()).keys) == 8          # no patterns: everything


def test_virtual_requirement_pulls_one_provider_by_priority_then_key():
    sel = select_tasks(catalogue(), select=["mail/send"])
    assert sel.keys == ["mail/exim", "mail/send"]            # catalogue order
    [pulled] = sel.pulled
    assert (pulled.key, pulled.requirement, pulled.wanted_by) == ("mail/exim", "mta",
                                                                  "mail/send")
    assert pulled.rule == "first key"                        # exim and postfix tie at 5
    assert pulled.candidates == ("mail/exim", "mail/postfix", "mail/sendmail")
    assert "over mail/postfix, mail/sendmail" in pulled.describe()


def test_lower_priority_value_wins_over_key():
    tasks = [task("a/slow", provides=["x"], priority=3), task("b/fast", provides=["x"],
                                                              priority=1),
             task("c/user", requires=["x"])]
    [pulled] = select_tasks(tasks, select=["c/user"]).pulled
    assert (pulled.key, pulled.rule) == ("b/fast", "lowest priority value")


def test_prefer_wins_and_its_order_counts():
    sel = select_tasks(catalogue(), select=["mail/send"],
                       prefer=["disk/fsck", "mail/sendmail", "mail/postfix"])
    assert [(p.key, p.rule) for p in sel.pulled] == [("mail/sendmail", "preferred")]


def test_a_selected_provider_is_used_and_none_is_added():
    sel = select_tasks(catalogue(), select=["mail/send", "mail/postfix"])
    assert sel.pulled == [] and sel.keys == ["mail/postfix", "mail/send"]


def test_pulled_tasks_get_their_own_requirements():
    tasks = [task("app", requires=["db"]), task("db", provides=["db"], requires=["disk"]),
             task("disk", provides=["disk"])]
    sel = select_tasks(tasks, select=["app"])
    assert sel.keys == ["app", "db", "disk"]
    assert [(p.key, p.wanted_by) for p in sel.pulled] == [("db", "app"), ("disk", "db")]


def test_excluded_tasks_are_never_pulled():
    sel = select_tasks(catalogue(), select=["mail/send"], exclude=["mail/exim"])
    assert [p.key for p in sel.pulled] == ["mail/postfix"]
    with pytest.raises(SelectionError, match=r"task net/ping requires 'net', and every task "
                                             r"providing it is excluded \(net/up\)"):
        select_tasks(catalogue(), select=["net/ping"], exclude=["net/up"])


def test_no_deps_leaves_unmet_tasks_out_with_the_reason_cascading():
    tasks = [task("a", requires=["x"], provides=["y"]), task("b", requires=["y"]),
             task("c"), task("p", provides=["x"])]
    sel = select_tasks(tasks, select=["a", "b", "c"], deps=False)
    assert sel.keys == ["c"]
    assert sel.unmet == {
        "a": "requires 'x', which no selected task provides (--no-deps)",
        "b": "requires 'y', its provider a cannot run (--no-deps)"}


def test_resolve_deps_alone_over_plain_tasks():
    cat = catalogue()
    send = cat[3]
    sel = resolve_deps([send], cat, prefer=["mail/postfix"])
    assert [fn() for _, fn in sel.tasks] == ["mail/postfix", "mail/send"]
    results = [res.ret for res in Sched([t for _, t in sel.tasks]).run()]
    assert sorted(results) == ["mail/postfix", "mail/send"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(select=["nothing*"]), r"--select 'nothing\*' matches no task"),
    (dict(select=["mail/[ab"]), r"--select 'mail/\[ab': '\[' at position 6 is never closed"),
    (dict(exclude=[""]), r"--exclude: empty pattern"),
    (dict(select=[3]), r"--select 3: not a string"),
    (dict(exclude=["*"]), r"the selection is empty: --exclude excludes every task"),
    (dict(select=["net"], exclude=["net/*"]),
     r"the selection is empty: every selected task is excluded"),
    (dict(select=["mail/send"], prefer=["mail/qmail"]),
     r"--prefer 'mail/qmail': no task has this key"),
])
def test_bad_input_is_one_clear_error(kwargs, message):
    with pytest.raises(SelectionError, match=message) as info:
        select_tasks(catalogue(), **kwargs)
    assert "\n" not in str(info.value)


def test_a_requirement_nobody_provides_names_task_and_requirement():
    with pytest.raises(SelectionError, match=r"task x requires 'ghost', which no task "
                                             "provides"):
        select_tasks([task("x", requires=["ghost"])])


def test_duplicate_keys_and_non_callables_in_the_catalogue():
    with pytest.raises(SelectionError, match="two tasks in the catalogue have the key 'a'"):
        select_tasks([task("a"), task("a")])
    with pytest.raises(SelectionError, match="catalogue entry 'k' is not callable"):
        select_tasks([("k", 42)])


def test_exact_keys_and_missing_ones():
    sel = select_tasks(catalogue(), keys=["net/ping", "gone/away"])
    assert sel.selected == ["net/ping"] and sel.missing == ["gone/away"]
    assert sel.keys == ["net/up", "net/ping"]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_property_every_requirement_is_met_by_exactly_the_chosen_providers(data):
    n = data.draw(st.integers(2, 12))
    names = ["r0", "r1", "r2", "r3"]
    tasks = []
    for i in range(n):
        provides = data.draw(st.lists(st.sampled_from(names), max_size=2, unique=True))
        requires = data.draw(st.lists(st.sampled_from(names), max_size=2, unique=True))
        # requirements only of lower names than any provided: no cycles
        floor = min((names.index(p) for p in provides), default=len(names))
        requires = [r for r in requires if names.index(r) < floor]
        tasks.append(task(f"t{i:02d}", provides=provides, requires=requires,
                          priority=data.draw(st.integers(0, 3))))
    picked = data.draw(st.lists(st.sampled_from([f"t{i:02d}" for i in range(n)]),
                                min_size=1, unique=True))
    try:
        sel = select_tasks(tasks, keys=picked)
    except SelectionError as exc:
        assert "which no task provides" in str(exc)
        return
    chosen = dict(sel.tasks)
    given_by = {}
    for key, fn in chosen.items():
        for what in fn.pexen_sched_meta_.get("provides"):
            given_by.setdefault(what, key)
    for key, fn in chosen.items():
        assert set(fn.pexen_sched_meta_.get("requires")) <= set(given_by), key
    # nothing pulled without a reason, and at most one provider added per need
    assert set(chosen) == set(picked) | {p.key for p in sel.pulled}
    wanted = [(p.requirement, p.wanted_by) for p in sel.pulled]
    assert len(wanted) == len(set(wanted))
    # the engine accepts the result (requirements all met)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PexenWarning)   # provided, not required
        Sched(list(chosen.values()))
