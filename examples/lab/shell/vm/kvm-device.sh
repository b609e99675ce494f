#!/bin/sh
# pexen: when="test -e /dev/kvm"
# With KVM: the device can be opened for reading and writing.
set -eu
test -r /dev/kvm && test -w /dev/kvm
