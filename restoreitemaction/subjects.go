package restoreitemaction

import "strings"

// mapUserName maps the namespace inside a service-account user name
// ("system:serviceaccount:<ns>:<name>"); other names are returned as they are.
func mapUserName(name string, nsMap map[string]string) string {
	rest, ok := strings.CutPrefix(name, "system:serviceaccount:")
	if !ok {
		return name
	}
	ns, sa, ok := strings.Cut(rest, ":")
	if !ok {
		return name
	}
	return "system:serviceaccount:" + mapNamespace(nsMap, ns) + ":" + sa
}

// mapGroupName maps the namespace of a namespace's service-account group
// ("system:serviceaccounts:<ns>").
func mapGroupName(name string, nsMap map[string]string) string {
	ns, ok := strings.CutPrefix(name, "system:serviceaccounts:")
	if !ok || ns == "" {
		return name
	}
	return "system:serviceaccounts:" + mapNamespace(nsMap, ns)
}
