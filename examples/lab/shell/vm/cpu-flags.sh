#!/bin/sh
# pexen: when="test -r /proc/cpuinfo"
# The CPU flags a hypervisor needs are listed (vmx or svm), or we say why not.
set -eu
if grep -qwE 'vmx|svm' /proc/cpuinfo; then
    echo "hardware virtualization: yes"
else
    echo "no vmx/svm flag: virtual machines would run without acceleration"
    exit 77
fi
