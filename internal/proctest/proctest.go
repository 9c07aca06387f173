// Package proctest answers questions tests ask about processes (children, liveness) from /proc.
package proctest

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ChildPIDs lists the live children of process parent whose command name is comm, as /proc
// shows them (zombies left out): tests check that what a program started ends with it.
func ChildPIDs(parent int, comm string) []int {
	var pids []int
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		name, state, ppid, ok := procStat(pid)
		if ok && ppid == parent && name == comm && state != "Z" {
			pids = append(pids, pid)
		}
	}
	return pids
}

// ProcessAlive reports whether pid exists and is not a zombie.
func ProcessAlive(pid int) bool {
	_, state, _, ok := procStat(pid)
	return ok && state != "Z"
}

// Parent is the parent pid of pid, 0 when it cannot be read.
func Parent(pid int) int {
	_, _, ppid, _ := procStat(pid)
	return ppid
}

// procStat reads a process's command name, state and parent from /proc/PID/stat; the name is
// in parentheses and may itself hold blanks or parentheses.
func procStat(pid int) (comm, state string, ppid int, ok bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", "", 0, false
	}
	i, j := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	if i < 0 || j < i {
		return "", "", 0, false
	}
	if _, err := fmt.Sscan(string(stat[j+1:]), &state, &ppid); err != nil {
		return "", "", 0, false
	}
	return string(stat[i+1 : j]), state, ppid, true
}

// PodPIDs lists the processes of a Kubernetes pod on this machine (see PodUID).
func PodPIDs(uid string) []int {
	if uid == "" {
		return nil
	}
	var pids []int
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if pid, err := strconv.Atoi(p.Name()); err == nil && PodUID(pid) == uid {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Args is the command line of pid, nil when it cannot be read (or it is a kernel thread).
func Args(pid int) []string {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(cmdline) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
}

// PodUID is the uid of the Kubernetes pod pid runs in ("" for a process outside pods), read from
// kubelet's pod<uid> element of its cgroup path.
func PodUID(pid int) string {
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(cg), "\n") {
		for _, elem := range strings.Split(line, "/") {
			if uid, ok := strings.CutPrefix(elem, "pod"); ok && len(uid) == 36 {
				return uid
			}
		}
	}
	return ""
}
