"""HeaderMap against a reference model: a plain list of (name, value) pairs and the contract
each method's docstring states. Random operation sequences, bounded for speed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from outrider.http.headers import HeaderMap, RequestHeaders, ResponseHeaders

# Few names, so that operations hit repeated headers often.
names = st.sampled_from(["a", "b", "c", "x-forwarded-for", "set-cookie"])
values = st.text("xyz,; 01", max_size=4)
operations = st.lists(st.one_of(
    st.tuples(st.just("add"), names, values),
    st.tuples(st.just("set"), names, values),
    st.tuples(st.just("set_default"), names, values),
    st.tuples(st.just("remove"), names, st.just("")),
    st.tuples(st.just("remove_if"), st.sets(names, max_size=2), st.just("")),
), max_size=30)


def model_apply(model: list[tuple[str, str]], op: str, name, value: str):
    """The documented contract, on a plain list; returns what the method returns."""
    if op == "add":
        model.append((name, value))
    elif op == "set":
        first = next((i for i, (k, _) in enumerate(model) if k == name), None)
        if first is None:
            model.append((name, value))
        else:
            model[:] = model[:first] + [(name, value)] + [
                kv for kv in model[first + 1:] if kv[0] != name]
    elif op == "set_default":
        if all(k != name for k, _ in model):
            model.append((name, value))
    elif op == "remove":
        before = len(model)
        model[:] = [kv for kv in model if kv[0] != name]
        return len(model) != before
    elif op == "remove_if":
        model[:] = [kv for kv in model if kv[0] not in name]
    return None


def map_apply(headers: HeaderMap, op: str, name, value: str):
    if op == "remove_if":
        return headers.remove_if(name.__contains__)
    if op == "remove":
        return headers.remove(name)
    return getattr(headers, op)(name, value)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(names, values), max_size=6), operations)
def test_header_map_matches_the_list_model(initial, ops):
    headers = HeaderMap(initial)
    model = list(initial)
    for op, name, value in ops:
        assert map_apply(headers, op, name, value) == model_apply(model, op, name, value), op
        assert headers.items() == model
    assert list(headers) == model
    assert len(headers) == len(model)
    for name in ["a", "b", "c", "x-forwarded-for", "set-cookie", "absent"]:
        expected = [v for k, v in model if k == name]
        assert headers.get_all(name) == expected
        assert headers.get(name) == (expected[0] if expected else None)
        assert (name in headers) is bool(expected)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(names, values), max_size=4), operations)
def test_request_pseudo_headers_are_attributes_not_items(initial, ops):
    headers = RequestHeaders("PUT", "/p?q", "h.example", "https", initial)
    model = list(initial)
    for op, name, value in ops:
        map_apply(headers, op, name, value)
        model_apply(model, op, name, value)
    assert headers.items() == model
    assert (headers.get(":method"), headers.get(":path"), headers.get(":authority"),
            headers.get(":scheme"), headers.get("host"), headers.get(":unknown")) == (
        "PUT", "/p?q", "h.example", "https", "h.example", None)


def test_response_status_reads_as_a_string():
    headers = ResponseHeaders(503, [("a", "1")])
    assert (headers.get(":status"), headers.get("a"), headers.status) == ("503", "1", 503)


def test_initial_items_are_copied():
    items = [("a", "1")]
    headers = HeaderMap(items)
    headers.add("b", "2")
    assert items == [("a", "1")]
