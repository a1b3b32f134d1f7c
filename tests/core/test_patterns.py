"""Event patterns match events as EventBridge's do, and bad patterns are refused in one sentence.

Worked examples come from the AWS pages "Creating Amazon EventBridge event patterns",
"Content filtering in Amazon EventBridge event patterns", "Comparison operators for use in
event patterns in Amazon EventBridge" and "Matching events on null values and empty strings
in Amazon EventBridge".
"""

from __future__ import annotations

import json

import pytest

from fleetrun.core.errors import ValidationError
from fleetrun.core.patterns import Pattern, PatternError, compile_pattern, pattern_fields

# "Creating Amazon EventBridge event patterns": the EC2 state-change event.
EC2 = {
    "version": "0",
    "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "account": "111122223333",
    "time": "2017-12-22T18:43:48Z",
    "region": "us-west-1",
    "resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"],
    "detail": {"instance-id": "i-1234567890abcdef0", "state": "terminated"},
}

# "Matching events on null values and empty strings in Amazon EventBridge".
NULLS = {
    "source": "aws.autoscaling",
    "resources": [],
    "detail": {"eventVersion": "", "responseElements": None},
}

CASES = [
    # -- exact values, AND across fields, OR within a list ("Creating ... event patterns")
    (
        {
            "source": ["aws.ec2"],
            "detail-type": ["EC2 Instance State-change Notification"],
            "detail": {"state": ["terminated"]},
        },
        EC2,
        True,
    ),
    ({"source": ["aws.ec2"], "detail": {"state": ["running"]}}, EC2, False),
    ({"detail": {"state": ["running", "terminated"]}}, EC2, True),
    ({"detail": {"state": ["Terminated"]}}, EC2, False),  # exact is case-sensitive
    ({"source": ["aws.ec2"], "region": ["eu-west-1"]}, EC2, False),
    ({"nothere": ["x"]}, EC2, False),
    ({"detail": {"nothere": ["x"]}}, EC2, False),
    ({"detail": {"state": {"deeper": ["x"]}}}, EC2, False),  # a string has no fields
    ({"source": ["aws"]}, EC2, False),  # whole values, not substrings
    # -- numbers: compared as numbers, never as text or booleans
    ({"n": [300]}, {"n": 3.0e2}, True),
    ({"n": [3.0e2]}, {"n": 300}, True),
    ({"n": [300]}, {"n": 300.0000001}, True),  # six digits after the point
    ({"n": [300]}, {"n": 300.001}, False),
    ({"n": [300]}, {"n": "300"}, False),
    ({"n": ["300"]}, {"n": 300}, False),
    ({"n": [1]}, {"n": True}, False),
    ({"n": [0]}, {"n": False}, False),
    ({"n": [-1.5]}, {"n": -1.5}, True),
    ({"n": [1e20]}, {"n": 1e20}, True),  # beyond the numeric range: still equal to itself
    ({"n": [1e20]}, {"n": 1e20 + 1e5}, False),
    # -- booleans and null
    ({"b": [True]}, {"b": True}, True),
    ({"b": [True]}, {"b": 1}, False),
    ({"b": [False]}, {"b": 0}, False),
    ({"b": [False]}, {"b": False}, True),
    ({"b": [True]}, {"b": "true"}, False),
    # -- null and empty string ("Matching events on null values and empty strings")
    ({"detail": {"eventVersion": [""]}}, NULLS, True),
    ({"detail": {"responseElements": [None]}}, NULLS, True),
    ({"detail": {"responseElements": [""]}}, NULLS, False),  # null is not ""
    ({"detail": {"eventVersion": [None]}}, NULLS, False),
    ({"detail": {"absent": [None]}}, NULLS, False),  # absent is not null
    ({"detail": {"absent": [""]}}, NULLS, False),
    # -- arrays in the event: a leaf matches when any element does
    ({"resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"]}, EC2, True),
    ({"tags": ["b", "z"]}, {"tags": ["a", "b", "c"]}, True),
    ({"tags": ["z"]}, {"tags": ["a", "b", "c"]}, False),
    ({"tags": ["c"]}, {"tags": [["a"], ["b", ["c"]]]}, True),  # nested lists are looked into
    ({"resources": ["x"]}, NULLS, False),  # an empty list holds no value
    ({"n": [{"numeric": [">", 10]}]}, {"n": [1, 2, 30]}, True),
    # -- arrays of objects: one element must match the whole nested pattern
    (
        {"employees": {"firstName": ["Anna"]}},
        {"employees": [{"firstName": "John"}, {"firstName": "Anna"}]},
        True,
    ),
    (
        {"employees": {"firstName": ["Anna"], "lastName": ["Smith"]}},
        {"employees": [{"firstName": "Anna", "lastName": "Smith"}, {"firstName": "Peter"}]},
        True,
    ),
    (
        {"employees": {"firstName": ["Anna"], "lastName": ["Jones"]}},
        {"employees": [{"firstName": "Anna", "lastName": "Smith"}, {"lastName": "Jones"}]},
        False,
    ),
    (
        {"employees": {"firstName": ["Peter"]}},
        {"employees": [[{"firstName": "Anna"}], [{"firstName": "Peter"}]]},
        True,
    ),
    ({"a": {"b": ["x"]}}, {"a": [{"b": "y"}, {"b": ["z", "x"]}]}, True),
    # -- prefix ("Content filtering ...": the time and region examples)
    ({"time": [{"prefix": "2017-12-22"}]}, EC2, True),
    ({"time": [{"prefix": "2017-10-02"}]}, EC2, False),
    ({"source": ["aws.ec2"], "region": [{"prefix": "us-"}]}, EC2, True),
    ({"region": [{"prefix": "eu-"}]}, EC2, False),
    ({"region": [{"prefix": "US-"}]}, EC2, False),
    ({"n": [{"prefix": "3"}]}, {"n": 300}, False),  # strings only
    ({"s": [{"prefix": ""}]}, {"s": "anything"}, True),
    ({"service": [{"prefix": {"equals-ignore-case": "EventB"}}]}, {"service": "eventbridge"}, True),
    ({"service": [{"prefix": {"equals-ignore-case": "EventB"}}]}, {"service": "EVENTBUS"}, True),
    ({"service": [{"prefix": {"equals-ignore-case": "EventB"}}]}, {"service": "myEventB"}, False),
    # -- suffix
    ({"FileName": [{"suffix": ".png"}]}, {"FileName": "image.png"}, True),
    ({"FileName": [{"suffix": ".png"}]}, {"FileName": "image.PNG"}, False),
    ({"FileName": [{"suffix": ".png"}]}, {"FileName": "image.png.txt"}, False),
    ({"FileName": [{"suffix": {"equals-ignore-case": ".png"}}]}, {"FileName": "a.PNG"}, True),
    ({"FileName": [{"suffix": {"equals-ignore-case": ".png"}}]}, {"FileName": "a.jpg"}, False),
    ({"n": [{"suffix": "0"}]}, {"n": 300}, False),
    # -- equals-ignore-case
    ({"Name": [{"equals-ignore-case": "alice"}]}, {"Name": "Alice"}, True),
    ({"Name": [{"equals-ignore-case": "alice"}]}, {"Name": "ALICE"}, True),
    ({"Name": [{"equals-ignore-case": "alice"}]}, {"Name": "Alicia"}, False),
    ({"Name": [{"equals-ignore-case": "true"}]}, {"Name": True}, False),
    ({"Name": [{"equals-ignore-case": "straße"}]}, {"Name": "STRASSE"}, True),
    # -- wildcard
    ({"FilePath": [{"wildcard": "dir/*.png"}]}, {"FilePath": "dir/a.png"}, True),
    ({"FilePath": [{"wildcard": "dir/*.png"}]}, {"FilePath": "dir/sub/a.png"}, True),
    ({"FilePath": [{"wildcard": "dir/*.png"}]}, {"FilePath": "other/a.png"}, False),
    ({"FilePath": [{"wildcard": "dir/*.png"}]}, {"FilePath": "dir/.png"}, True),  # * is zero too
    ({"s": [{"wildcard": "*Title*"}]}, {"s": "The Title here"}, True),
    ({"s": [{"wildcard": "*Title*"}]}, {"s": "title"}, False),
    ({"s": [{"wildcard": "a*b*c"}]}, {"s": "axxbyyc"}, True),
    ({"s": [{"wildcard": "a*b*c"}]}, {"s": "axxcyyb"}, False),
    ({"s": [{"wildcard": "exact"}]}, {"s": "exact"}, True),
    ({"s": [{"wildcard": "exact"}]}, {"s": "exactly"}, False),
    ({"s": [{"wildcard": "*"}]}, {"s": ""}, True),
    ({"s": [{"wildcard": "*"}]}, {"s": 5}, False),
    ({"s": [{"wildcard": "a\\*b"}]}, {"s": "a*b"}, True),  # \* is a literal star
    ({"s": [{"wildcard": "a\\*b"}]}, {"s": "axxb"}, False),
    ({"s": [{"wildcard": "a\\\\*"}]}, {"s": "a\\tail"}, True),  # \\ is a backslash, then *
    ({"s": [{"wildcard": "a.c"}]}, {"s": "abc"}, False),  # no regex meaning for "."
    ({"s": [{"wildcard": "line*end"}]}, {"s": "line\nend"}, True),
    # -- anything-but (values and lists)
    (
        {"detail": {"state": [{"anything-but": "initializing"}]}},
        {"detail": {"state": "running"}},
        True,
    ),
    (
        {"detail": {"state": [{"anything-but": "initializing"}]}},
        {"detail": {"state": "initializing"}},
        False,
    ),
    ({"detail": {"state": [{"anything-but": "initializing"}]}}, {"detail": {}}, False),  # absent
    ({"x-limit": [{"anything-but": 123}]}, {"x-limit": 124}, True),
    ({"x-limit": [{"anything-but": 123}]}, {"x-limit": 1.23e2}, False),
    ({"state": [{"anything-but": ["stopped", "overloaded"]}]}, {"state": "stopped"}, False),
    ({"state": [{"anything-but": ["stopped", "overloaded"]}]}, {"state": "running"}, True),
    ({"x-limit": [{"anything-but": [100, 200, 300]}]}, {"x-limit": 200}, False),
    ({"x-limit": [{"anything-but": [100, 200, 300]}]}, {"x-limit": 250}, True),
    ({"price": [{"anything-but": [100, 500]}]}, {"price": [100, 50]}, True),  # one element isn't
    ({"price": [{"anything-but": [100, 500]}]}, {"price": [100, 500]}, False),
    ({"state": [{"anything-but": "5"}]}, {"state": 5}, True),  # a number is not the string "5"
    ({"state": [{"anything-but": 5}]}, {"state": "5"}, True),
    ({"state": [{"anything-but": "x"}]}, {"state": None}, True),  # null is a value, not "x"
    # -- anything-but prefix, suffix, equals-ignore-case, wildcard
    ({"state": [{"anything-but": {"prefix": "init"}}]}, {"state": "initializing"}, False),
    ({"state": [{"anything-but": {"prefix": "init"}}]}, {"state": "running"}, True),
    ({"Region": [{"anything-but": {"prefix": "us-"}}]}, EC2 | {"Region": "eu-west-1"}, True),
    ({"FileName": [{"anything-but": {"suffix": ".png"}}]}, {"FileName": "a.png"}, False),
    ({"FileName": [{"anything-but": {"suffix": ".png"}}]}, {"FileName": "a.jpg"}, True),
    (
        {"state": [{"anything-but": {"equals-ignore-case": "initializing"}}]},
        {"state": "INITIALIZING"},
        False,
    ),
    (
        {"state": [{"anything-but": {"equals-ignore-case": "initializing"}}]},
        {"state": "running"},
        True,
    ),
    (
        {"state": [{"anything-but": {"equals-ignore-case": ["initializing", "stopped"]}}]},
        {"state": "Stopped"},
        False,
    ),
    ({"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]}, {"FilePath": "/usr/lib/x"}, False),
    ({"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]}, {"FilePath": "/usr/bin/x"}, True),
    (
        {"FilePath": [{"anything-but": {"wildcard": ["*/lib/*", "*/bin/*"]}}]},
        {"FilePath": "/usr/bin/x"},
        False,
    ),
    ({"state": [{"anything-but": {"prefix": "1"}}]}, {"state": 123}, True),  # strings only excluded
    # -- numeric ("Content filtering ...": c-count, d-count, x-limit)
    ({"detail": {"c-count": [{"numeric": [">", 0, "<=", 5]}]}}, {"detail": {"c-count": 5}}, True),
    ({"detail": {"c-count": [{"numeric": [">", 0, "<=", 5]}]}}, {"detail": {"c-count": 0}}, False),
    (
        {"detail": {"c-count": [{"numeric": [">", 0, "<=", 5]}]}},
        {"detail": {"c-count": 5.1}},
        False,
    ),
    ({"detail": {"d-count": [{"numeric": ["<", 10]}]}}, {"detail": {"d-count": 3}}, True),
    ({"detail": {"d-count": [{"numeric": ["<", 10]}]}}, {"detail": {"d-count": 10}}, False),
    ({"detail": {"x-limit": [{"numeric": ["=", 3.018e2]}]}}, {"detail": {"x-limit": 301.8}}, True),
    ({"n": [{"numeric": ["=", 301.8]}]}, {"n": 301.81}, False),
    ({"n": [{"numeric": [">=", 10]}]}, {"n": 10}, True),
    ({"n": [{"numeric": ["<=", -1]}]}, {"n": -1}, True),
    ({"n": [{"numeric": [">", 10, "<", 20]}]}, {"n": 15}, True),
    ({"n": [{"numeric": [">", 10, "<", 20]}]}, {"n": 20}, False),
    ({"n": [{"numeric": [">=", 10, "<=", 20]}]}, {"n": 20}, True),
    ({"n": [{"numeric": [">", 0]}]}, {"n": "5"}, False),  # JSON numbers only
    ({"n": [{"numeric": [">", 0]}]}, {"n": True}, False),
    ({"n": [{"numeric": [">", 0]}]}, {"n": 6e9}, False),  # beyond the numeric range
    ({"n": [{"numeric": ["<=", 5e9]}]}, {"n": 5e9}, True),
    ({"n": [{"numeric": [">", 0]}]}, {}, False),
    ({"n": [{"numeric": [">", 0.1]}]}, {"n": 0.1000001}, False),  # six digits after the point
    # -- cidr
    (
        {"detail": {"source-ip": [{"cidr": "10.0.0.0/24"}]}},
        {"detail": {"source-ip": "10.0.0.33"}},
        True,
    ),
    (
        {"detail": {"source-ip": [{"cidr": "10.0.0.0/24"}]}},
        {"detail": {"source-ip": "10.0.1.1"}},
        False,
    ),
    ({"ip": [{"cidr": "10.0.0.0/8"}]}, {"ip": "10.255.1.2"}, True),
    ({"ip": [{"cidr": "10.0.0.7"}]}, {"ip": "10.0.0.7"}, True),  # a bare address is a /32
    ({"ip": [{"cidr": "2001:db8::/32"}]}, {"ip": "2001:db8:1::5"}, True),
    ({"ip": [{"cidr": "2001:db8::/32"}]}, {"ip": "2001:db9::5"}, False),
    ({"ip": [{"cidr": "2001:db8::/32"}]}, {"ip": "10.0.0.1"}, False),
    ({"ip": [{"cidr": "10.0.0.0/8"}]}, {"ip": "::ffff:10.0.0.1"}, False),  # versions never mix
    ({"ip": [{"cidr": "10.0.0.0/8"}]}, {"ip": "not an address"}, False),
    ({"ip": [{"cidr": "10.0.0.0/8"}]}, {"ip": 167772161}, False),
    # -- exists (leaf fields only; null and "" are present)
    ({"detail": {"c-count": [{"exists": True}]}}, {"detail": {"c-count": 5}}, True),
    ({"detail": {"c-count": [{"exists": True}]}}, {"detail": {}}, False),
    ({"detail": {"c-count": [{"exists": False}]}}, {"detail": {}}, True),
    ({"detail": {"c-count": [{"exists": False}]}}, {"detail": {"c-count": 5}}, False),
    ({"detail": {"c-count": [{"exists": False}]}}, {}, True),  # no detail at all
    ({"detail": {"c-count": [{"exists": False}]}}, {"detail": "text"}, True),
    ({"detail": {"responseElements": [{"exists": True}]}}, NULLS, True),
    ({"detail": {"eventVersion": [{"exists": True}]}}, NULLS, True),
    ({"detail": {"responseElements": [{"exists": False}]}}, NULLS, False),
    ({"detail": {"c-count": [{"exists": False}]}}, {"detail": {"c-count": {"c1": 100}}}, True),
    ({"detail": {"c-count": [{"exists": True}]}}, {"detail": {"c-count": {"c1": 100}}}, False),
    ({"resources": [{"exists": False}]}, NULLS, True),  # an empty list holds no value
    ({"resources": [{"exists": True}]}, EC2, True),
    ({"s": ["a", {"exists": False}]}, {}, True),  # absent, or "a"
    ({"s": ["a", {"exists": False}]}, {"s": "a"}, True),
    ({"s": ["a", {"exists": False}]}, {"s": "b"}, False),
    # -- exists false in a list of objects: missing from every element, unless other fields
    #    of the pattern tie it to one element
    ({"r": {"tag": [{"exists": False}]}}, {"r": [{"type": "a"}, {"type": "b", "tag": "x"}]}, False),
    ({"r": {"tag": [{"exists": False}]}}, {"r": [{"type": "a"}, {"type": "b"}]}, True),
    ({"r": {"m": {"tag": [{"exists": False}]}}}, {"r": [{"m": {}}, {"m": {"tag": 1}}]}, False),
    (
        {"r": {"type": ["a"], "tag": [{"exists": False}]}},
        {"r": [{"type": "a"}, {"type": "b", "tag": "x"}]},
        True,
    ),
    (
        {"r": {"type": ["b"], "tag": [{"exists": False}]}},
        {"r": [{"type": "a"}, {"type": "b", "tag": "x"}]},
        False,
    ),
    ({"r": {"tag": ["x", {"exists": False}]}}, {"r": [{"type": "a"}, {"tag": "y"}]}, True),
    # -- several values of different kinds in one list
    ({"s": ["x", {"prefix": "ab"}, {"numeric": [">", 9]}]}, {"s": "abc"}, True),
    ({"s": ["x", {"prefix": "ab"}, {"numeric": [">", 9]}]}, {"s": 10}, True),
    ({"s": ["x", {"prefix": "ab"}, {"numeric": [">", 9]}]}, {"s": "b"}, False),
    # -- $or ("Comparison operators ...": Location/Day; and nested $or)
    (
        {"$or": [{"Location": ["New York"]}, {"Day": ["Monday"]}]},
        {"Location": "Paris", "Day": "Monday"},
        True,
    ),
    (
        {"$or": [{"Location": ["New York"]}, {"Day": ["Monday"]}]},
        {"Location": "Paris", "Day": "Friday"},
        False,
    ),
    (
        {
            "source": ["aws.cloudwatch"],
            "$or": [{"metricName": ["CPUUtilization"]}, {"namespace": ["AWS/EC2"]}],
        },
        {"source": "aws.cloudwatch", "namespace": "AWS/EC2"},
        True,
    ),
    (
        {
            "source": ["aws.cloudwatch"],
            "$or": [{"metricName": ["CPUUtilization"]}, {"namespace": ["AWS/EC2"]}],
        },
        {"source": "aws.other", "namespace": "AWS/EC2"},
        False,
    ),
    (
        {
            "source": ["aws.cloudwatch"],
            "$or": [
                {"metricName": ["CPUUtilization"]},
                {
                    "metricType": ["MetricType"],
                    "namespace": ["AWS/EC2"],
                    "$or": [{"metricId": [1234]}, {"spaceId": [1000]}],
                },
            ],
        },
        {
            "source": "aws.cloudwatch",
            "metricType": "MetricType",
            "namespace": "AWS/EC2",
            "spaceId": 1000,
        },
        True,
    ),
    (
        {
            "source": ["aws.cloudwatch"],
            "$or": [
                {"metricName": ["CPUUtilization"]},
                {
                    "metricType": ["MetricType"],
                    "namespace": ["AWS/EC2"],
                    "$or": [{"metricId": [1234]}, {"spaceId": [1000]}],
                },
            ],
        },
        {
            "source": "aws.cloudwatch",
            "metricType": "MetricType",
            "namespace": "AWS/EC2",
            "spaceId": 1,
        },
        False,
    ),
    (
        {"detail": {"$or": [{"source": ["aws.cloudwatch"]}, {"detail-type": ["Alarm"]}]}},
        {"detail": {"detail-type": "Alarm"}},
        True,
    ),
    (
        {
            "detail": {
                "$or": [{"c-count": [{"numeric": [">", 5]}]}, {"d-count": [{"exists": False}]}]
            }
        },
        {"detail": {"c-count": 1}},
        True,
    ),
    (
        {"items": {"$or": [{"a": [1]}, {"b": [2]}], "c": [3]}},
        {"items": [{"a": 1, "c": 0}, {"b": 2, "c": 3}]},
        True,
    ),
    (
        {"items": {"$or": [{"a": [1]}, {"b": [9]}], "c": [3]}},
        {"items": [{"a": 1, "c": 0}, {"b": 2, "c": 3}]},
        False,
    ),
    # -- dotted field names are paths, in patterns and events alike (as EventBridge joins them)
    ({"a.b": ["x"]}, {"a.b": "x"}, True),
    ({"a.b": ["x"]}, {"a": {"b": "x"}}, True),
    ({"a": {"b": ["x"]}}, {"a.b": "x"}, True),
    ({"a.b": ["x"]}, {"a": {"b": "y"}}, False),
    ({"a.b": ["x"]}, {"a": "x"}, False),
    ({"detail": {"state.status": ["Failed"]}}, {"detail": {"state": {"status": "Failed"}}}, True),
    ({"detail": {"state": {"status": ["Failed"]}}}, {"detail": {"state.status": "Failed"}}, True),
    ({"detail.state.status": ["Failed"]}, {"detail": {"state.status": "Failed"}}, True),
    ({"detail.state.status": ["Failed"]}, {"detail": {"state": {"status": "Success"}}}, False),
    ({"a.b.c": [1]}, {"a.b": {"c": 1}}, True),
    ({"a": {"b": ["x"], "c.d": ["y"]}}, {"a": {"b": "x", "c": {"d": "y"}}}, True),
    ({"a": {"b": ["x"], "c.d": ["y"]}}, {"a": {"b": "x", "c": {"d": "z"}}}, False),
    ({"a.b": ["x"], "a": {"c": ["y"]}}, {"a": {"b": "x", "c": "y"}}, True),  # merged, ANDed
    ({"a.b": ["x"], "a": {"c": ["y"]}}, {"a": {"b": "x"}}, False),
    ({"a.b": [{"exists": False}]}, {"a": {"c": 1}}, True),
    ({"a.b": [{"exists": True}]}, {"a.b": 1}, True),
    ({"$or": [{"a.b": ["x"]}, {"c": ["y"]}]}, {"a": {"b": "x"}}, True),
    # -- anything-but with a list under prefix and suffix, as EventBridge takes it
    ({"s": [{"anything-but": {"prefix": ["init", "test"]}}]}, {"s": "testing"}, False),
    ({"s": [{"anything-but": {"prefix": ["init", "test"]}}]}, {"s": "initial"}, False),
    ({"s": [{"anything-but": {"prefix": ["init", "test"]}}]}, {"s": "running"}, True),
    ({"s": [{"anything-but": {"prefix": ["init"]}}]}, {"s": 5}, True),
    ({"f": [{"anything-but": {"suffix": [".png", ".jpg"]}}]}, {"f": "a.jpg"}, False),
    ({"f": [{"anything-but": {"suffix": [".png", ".jpg"]}}]}, {"f": "a.gif"}, True),
    ({"f": [{"anything-but": {"suffix": [".png"]}}]}, {"f": ["a.png", "b.gif"]}, True),
    ({"f": [{"anything-but": {"suffix": [".png"]}}]}, {"f": ["a.png"]}, False),
    ({"s": [{"anything-but": {"wildcard": ["in*", "*ed"]}}]}, {"s": "stopped"}, False),
    ({"s": [{"anything-but": {"equals-ignore-case": ["A", "b"]}}]}, {"s": "B"}, False),
]


@pytest.mark.parametrize(("pattern", "event", "expected"), CASES)
def test_matches(pattern, event, expected):
    assert compile_pattern(pattern).matches(event) is expected


@pytest.mark.parametrize(("pattern", "event", "expected"), CASES[::7])
def test_a_pattern_given_as_json_text_matches_the_same(pattern, event, expected):
    assert compile_pattern(json.dumps(pattern)).matches(event) is expected


ERRORS = [
    # -- the shape of a pattern
    ("[]", "A pattern must be a JSON object"),
    ('"source"', "A pattern must be a JSON object"),
    ("{}", "A pattern must name at least one field"),
    ('{"source": ["a"],}', "The pattern is not valid JSON at line 1, column 18"),
    ('{"n": [NaN]}', "The pattern holds NaN, which is not a JSON number."),
    ({"source": "aws.ec2"}, 'pattern field "source": expects a list of values like ["aws.ec2"]'),
    ({"detail": {"state": 5}}, 'pattern field "detail.state": expects a list of values like [5]'),
    ({"source": None}, 'pattern field "source": expects a list of values like [null]'),
    ({"source": []}, 'pattern field "source": is an empty list'),
    ({"detail": {}}, 'pattern field "detail": is an empty object'),
    ({"source": [["a"]]}, 'pattern field "source": a list of values cannot hold another list'),
    ({"n": [float("inf")]}, 'pattern field "n": a value must be a finite number'),
    # -- operator objects
    ({"s": [{}]}, 'pattern field "s": an operator object holds exactly one operator, not 0'),
    ({"s": [{"prefix": "a", "suffix": "b"}]}, "holds exactly one operator, not 2 (prefix, suffix)"),
    ({"s": [{"contains": "a"}]}, 'pattern field "s": unknown operator "contains"; use one of'),
    ({"s": [{"Prefix": "a"}]}, 'unknown operator "Prefix"'),
    # -- prefix, suffix, equals-ignore-case
    ({"s": [{"prefix": 5}]}, 'pattern field "s": prefix expects a string'),
    ({"s": [{"prefix": ["a"]}]}, "prefix expects a string"),
    ({"s": [{"prefix": {"equals-ignore-case": 5}}]}, "prefix equals-ignore-case expects a string"),
    ({"s": [{"prefix": {"wildcard": "a*"}}]}, 'prefix takes a string or {"equals-ignore-case"'),
    ({"s": [{"suffix": None}]}, "suffix expects a string, like"),
    ({"s": [{"suffix": {"equals-ignore-case": "a", "x": 1}}]}, "suffix takes a string or"),
    ({"s": [{"equals-ignore-case": 1}]}, "equals-ignore-case expects a string"),
    # -- wildcard
    ({"s": [{"wildcard": 1}]}, "wildcard expects a string"),
    ({"s": [{"wildcard": "a**b"}]}, 'wildcard "a**b" has consecutive wildcards'),
    ({"s": [{"wildcard": "a\\*\\**"}]}, None),  # escaped stars are not wildcards: valid
    ({"s": [{"wildcard": "a\\b"}]}, "escapes 'b'; only \\* (a star) and \\\\ (a backslash)"),
    ({"s": [{"wildcard": "a\\"}]}, "escapes 'nothing'"),
    # -- anything-but
    ({"s": [{"anything-but": []}]}, "anything-but expects a value or a non-empty list"),
    ({"s": [{"anything-but": ["a", 1]}]}, "a list of only strings or only numbers"),
    ({"s": [{"anything-but": True}]}, "anything-but expects a string, a number"),
    ({"s": [{"anything-but": None}]}, "anything-but expects a string, a number"),
    ({"s": [{"anything-but": [None]}]}, "anything-but expects a string, a number"),
    ({"s": [{"anything-but": {"numeric": [">", 1]}}]}, "anything-but takes one of"),
    ({"s": [{"anything-but": {"prefix": "a", "suffix": "b"}}]}, "not prefix, suffix"),
    ({"s": [{"anything-but": {}}]}, "not nothing"),
    ({"s": [{"anything-but": {"prefix": [1]}}]}, "anything-but prefix expects a string"),
    ({"s": [{"anything-but": {"prefix": []}}]}, "anything-but prefix expects a string or a"),
    ({"s": [{"anything-but": {"suffix": ["a", ""]}}]}, "suffix expects a non-empty string"),
    ({"s": [{"anything-but": {"prefix": {"x": "y"}}}]}, "anything-but prefix expects a string"),
    # -- a field named dotted and nested at once
    ({"a.b": ["x"], "a": {"b": ["y"]}}, "names a field the pattern names already"),
    ({"a": {"b": ["x"]}, "a.b": {"c": ["y"]}}, "names a field the pattern names already"),
    ({"s": [{"anything-but": {"prefix": ""}}]}, "anything-but prefix expects a non-empty string"),
    ({"s": [{"anything-but": {"suffix": ""}}]}, "anything-but suffix expects a non-empty string"),
    ({"s": [{"anything-but": {"equals-ignore-case": []}}]}, "expects a string or a non-empty list"),
    ({"s": [{"anything-but": {"wildcard": ["a**"]}}]}, "has consecutive wildcards"),
    ({"s": [{"anything-but": {"wildcard": [1]}}]}, "anything-but wildcard expects a string"),
    # -- numeric
    (
        {"detail": {"status": [{"numeric": ">"}]}},
        'pattern field "detail.status": numeric expects pairs of an operator and a number, '
        'like {"numeric": [">", 0]}.',
    ),
    ({"n": [{"numeric": []}]}, "numeric expects pairs"),
    ({"n": [{"numeric": [">", 1, "<"]}]}, "numeric expects pairs"),
    ({"n": [{"numeric": ["!=", 1]}]}, 'numeric operator "!=" is unknown'),
    ({"n": [{"numeric": [1, ">"]}]}, "numeric operator 1 is unknown"),
    ({"n": [{"numeric": [">", "1"]}]}, "numeric > operand must be a finite number, not a string"),
    ({"n": [{"numeric": [">", True]}]}, "must be a finite number, not a boolean"),
    ({"n": [{"numeric": [">", 6e9]}]}, "numeric > operand 6000000000.0 is out of range"),
    ({"n": [{"numeric": ["<", -5.1e9]}]}, "out of range; numbers go from -5.0e9 to 5.0e9"),
    ({"n": [{"numeric": [">", 1, ">=", 2]}]}, "numeric takes = alone"),
    ({"n": [{"numeric": ["<", 20, ">", 10]}]}, "a lower bound (> or >=) then an upper bound"),
    ({"n": [{"numeric": ["<", 20, "<=", 30]}]}, "numeric takes = alone, one bound, or"),
    ({"n": [{"numeric": ["=", 1, "<", 2]}]}, "numeric takes = alone"),
    ({"n": [{"numeric": ["<", 2, "=", 1]}]}, "numeric takes = alone"),
    ({"n": [{"numeric": ["=", 1, "=", 1]}]}, "numeric takes = alone"),
    ({"n": [{"numeric": [">", 5, "<", 5]}]}, "numeric range is empty"),
    ({"n": [{"numeric": [">", 9, "<=", 1]}]}, "numeric range is empty"),
    # -- cidr
    ({"ip": [{"cidr": "10.0.0.0/33"}]}, 'cidr "10.0.0.0/33" is not an IP range'),
    ({"ip": [{"cidr": "10.1.1"}]}, 'cidr "10.1.1" is not an IP range'),
    ({"ip": [{"cidr": "2001:db8::/129"}]}, "is not an IP range"),
    ({"ip": [{"cidr": 10}]}, "cidr expects a string"),
    # -- exists
    ({"s": [{"exists": "true"}]}, "exists expects true or false, not a string"),
    ({"s": [{"exists": 1}]}, "exists expects true or false, not a number"),
    # -- $or
    ({"$or": [{"a": ["x"]}]}, 'pattern field "$or": $or expects a list of at least two'),
    ({"$or": {"a": ["x"]}}, "$or expects a list of at least two sub-patterns"),
    (
        {"$or": [{"a": ["x"]}, {}]},
        'pattern field "$or[1]": each $or entry must be a non-empty object, not an empty one.',
    ),
    ({"$or": [{"a": ["x"]}, ["b"]]}, "each $or entry must be a non-empty object, not a list"),
    ({"d": {"$or": [{"a": ["x"]}, {"b": "y"}]}}, 'pattern field "d.$or[1].b": expects a list'),
]


@pytest.mark.parametrize(("pattern", "message"), ERRORS)
def test_bad_patterns_are_refused_in_one_sentence(pattern, message):
    if message is None:
        assert isinstance(compile_pattern(pattern), Pattern)
        return
    with pytest.raises(PatternError) as caught:
        compile_pattern(pattern)
    text = caught.value.message
    assert message in text
    assert text.endswith(".") and "\n" not in text
    assert isinstance(caught.value, ValidationError) and caught.value.status_code == 400


def test_the_error_names_the_field_it_is_about():
    with pytest.raises(PatternError) as caught:
        compile_pattern({"detail": {"status": [{"numeric": [">", "x"]}]}})
    assert caught.value.field == "detail.status"
    with pytest.raises(PatternError) as caught:
        compile_pattern("[1]")
    assert caught.value.field is None


def test_a_deeply_nested_pattern_is_refused_not_crashed_on():
    pattern: dict = {"leaf": ["x"]}
    for _ in range(200):
        pattern = {"a": pattern}
    with pytest.raises(PatternError, match="nests deeper than 32 levels"):
        compile_pattern(pattern)


def test_deeply_nested_json_text_is_refused_not_crashed_on():
    with pytest.raises(PatternError, match="nests deeper than 32 levels"):
        compile_pattern('{"a": ' * 100_000 + "1" + "}" * 100_000)


def test_an_event_with_deeply_nested_lists_is_matched_without_recursion():
    deep: list = ["x"]
    for _ in range(100_000):
        deep = [deep]
    assert compile_pattern({"tags": ["x"]}).matches({"tags": deep})
    assert not compile_pattern({"tags": ["y"]}).matches({"tags": deep})


def test_source_is_the_pattern_as_given_and_not_shared():
    given = {"source": ["fleetrun"], "detail": {"status": ["Failed"]}}
    compiled = compile_pattern(given)
    given["source"].append("other")
    assert compiled.source == {"source": ["fleetrun"], "detail": {"status": ["Failed"]}}
    assert compile_pattern(json.dumps(compiled.source)).source == compiled.source


def test_matching_never_changes_the_event():
    event = json.loads(json.dumps(EC2))
    compile_pattern({"detail": {"nothere": [{"exists": False}]}, "source": ["aws.ec2"]}).matches(
        event
    )
    assert event == EC2


@pytest.mark.parametrize(
    ("pattern", "fields"),
    [
        ({"source": ["a"]}, {"source"}),
        (
            {"source": ["a"], "detail": {"status": ["b"], "n": {"m": [1]}}},
            {"source", "detail.status", "detail.n.m"},
        ),
        ({"$or": [{"a": ["x"]}, {"b": {"c": ["y"]}}]}, {"a", "b.c"}),
        ({"d": {"$or": [{"a": ["x"]}, {"b": [{"exists": False}]}]}}, {"d.a", "d.b"}),
        ('{"detail": {"x": [1]}}', {"detail.x"}),
    ],
)
def test_pattern_fields(pattern, fields):
    assert pattern_fields(pattern) == fields
    assert pattern_fields(compile_pattern(pattern)) == fields


def test_pattern_fields_checks_the_pattern():
    with pytest.raises(PatternError):
        pattern_fields({"source": "a"})


def test_an_event_built_in_code_with_a_name_that_is_not_a_string_still_matches():
    pattern = compile_pattern({"detail": {"state": ["x"]}})
    assert pattern.matches({"detail": {"state": "x"}, 5: "five"})
    assert pattern.matches({"detail": {"state": "x"}, 5: "five", "detail.other": 1})
