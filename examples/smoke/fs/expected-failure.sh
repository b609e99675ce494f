#!/bin/sh
# Fails on purpose, to show how a failure is reported: any exit status other
# than 0, 77 (skip) and 99 (error) is a failure.
echo "expected-failure: this test fails on purpose (exit status 1)" >&2
exit 1
