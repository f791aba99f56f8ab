package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// checkAddress accepts "ip:port", "[ipv6]:port" (0-stor_v2's forms, zone
// allowed) and "hostname:port" (ours). The port must be 1..65535.
func checkAddress(addr string) error {
	if addr == "" {
		return errors.New(`missing (want "ip:port", "[ipv6]:port" or "host:port")`)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		if strings.Count(addr, ":") > 1 && !strings.HasPrefix(addr, "[") {
			return fmt.Errorf("%q: an IPv6 address needs brackets: \"[ipv6]:port\"", addr)
		}
		return fmt.Errorf("%q: %v (want \"ip:port\", \"[ipv6]:port\" or \"host:port\")", addr, unwrapAddrErr(err))
	}
	if err := checkPort(port); err != nil {
		return fmt.Errorf("%q: %w", addr, err)
	}
	if host == "" {
		return fmt.Errorf("%q: no host", addr)
	}
	bracketed := strings.HasPrefix(addr, "[")
	if ip, err := netip.ParseAddr(host); err == nil {
		if bracketed && !ip.Is6() {
			return fmt.Errorf("%q: brackets are for IPv6 addresses only", addr)
		}
		return nil
	}
	if bracketed || strings.Contains(host, ":") {
		return fmt.Errorf("%q: %q is not a valid IPv6 address", addr, host)
	}
	if err := checkHostname(host); err != nil {
		return fmt.Errorf("%q: %w", addr, err)
	}
	return nil
}

// unwrapAddrErr drops net.AddrError's repetition of the address.
func unwrapAddrErr(err error) string {
	var ae *net.AddrError
	if errors.As(err, &ae) {
		return ae.Err
	}
	return err.Error()
}

func checkPort(port string) error {
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || port[0] == '+' {
		return fmt.Errorf("port %q is not a number in 1..65535", port)
	}
	return nil
}

// checkHostname accepts DNS names: dot-separated labels of letters, digits,
// '-' and '_' (not at either end), each 1..63 bytes, 253 bytes in all, an
// optional final dot, and not all digits (which would be a mistyped IPv4
// address).
func checkHostname(h string) error {
	name := strings.TrimSuffix(h, ".")
	if len(name) == 0 || len(name) > 253 {
		return fmt.Errorf("host name %q must be 1..253 bytes", h)
	}
	allNumeric := true
	for label := range strings.SplitSeq(name, ".") {
		if len(label) == 0 || len(label) > 63 {
			return fmt.Errorf("host name %q has an empty or over-long (>63) label", h)
		}
		for i := 0; i < len(label); i++ {
			ch := label[i]
			switch {
			case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z':
				allNumeric = false
			case ch >= '0' && ch <= '9':
			case (ch == '-' || ch == '_') && i > 0 && i < len(label)-1:
				allNumeric = false
			default:
				return fmt.Errorf("host name %q: invalid character %q in label %q", h, ch, label)
			}
		}
	}
	if allNumeric {
		return fmt.Errorf("%q is neither an IP address nor a host name", h)
	}
	return nil
}

// checkEndpoint accepts an etcd endpoint: "http(s)://host:port" or
// "host:port".
func checkEndpoint(e string) error {
	if !strings.Contains(e, "://") {
		return checkAddress(e)
	}
	u, err := url.Parse(e)
	if err != nil {
		return fmt.Errorf("%q: %v", e, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q: scheme %q, want http or https", e, u.Scheme)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q: only scheme://host:port (credentials go in username/password)", e)
	}
	return checkAddress(u.Host)
}
