package redfish

import (
	"crypto/hmac"
	"crypto/sha256"
	"net/http"
	"net/netip"
	"time"
)

// principal stands for a pair of credentials: an HMAC of user name and
// password under a key that lives as long as the server. Sessions keep it
// instead of the password, and a request is allowed a system when its
// principal equals the system's. Because the systems' credentials are read
// at each request, changing a BMC's password ends the sessions opened with
// the old one.
type principal [sha256.Size]byte

func (s *Server) principalOf(user, password string) principal {
	m := hmac.New(sha256.New, s.credKey)
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write([]byte(password))
	var p principal
	m.Sum(p[:0])
	return p
}

// authorize authenticates the request for an operation of scope sc, by its
// X-Auth-Token (a session) or else its HTTP Basic credentials, and finds
// the systems they open. Credentials that open no system get 401 (sushy
// then re-authenticates a session, or gives up on Basic auth); a system
// the credentials do not open is answered 404, as if it did not exist, like
// its absence from the collections.
//
// Wrong credentials count in the guard the IPMI endpoints use; see
// guardRule for what counts where and what a lockout refuses. A locked-out
// address gets 429 with Retry-After before any credential is checked. A
// session token is 128 random bits: a wrong one is an expired session, not
// a guess, and does not count.
func (s *Server) authorize(q *request, sc scope, kind string) error {
	if sc == public {
		return nil
	}
	idx := s.index()
	named, found := indexed{}, false
	key := "" // the BMC the path names, if any
	if sc == oneSystem {
		if named, found = idx.byID[q.r.PathValue("id")]; found {
			key = named.guardKey()
		}
	}
	ip := clientIP(q.r)
	if wait := s.lockedOut(idx, ip, key); wait > 0 {
		return errLockedOut(wait)
	}
	if tok := q.r.Header.Get("X-Auth-Token"); tok != "" {
		sess, ok := s.sessions.use(tok, s.now())
		if !ok {
			return errUnauthorized("The session has expired or was deleted.")
		}
		q.who = sess.who
	} else if user, pass, ok := q.r.BasicAuth(); ok {
		q.who = s.principalOf(user, pass)
	} else {
		return errUnauthorized("Send HTTP Basic credentials or the X-Auth-Token of a session.")
	}
	q.visible = idx.byWho[q.who]
	if len(q.visible) == 0 {
		s.failed(ip, key)
		return errUnauthorized(wrongCredentials)
	}
	if sc == oneSystem {
		if !found || named.who != q.who {
			return errNotFound(kind, q.r.PathValue("id"))
		}
		q.sys = named.System
	}
	return nil
}

// guardRule: how Redfish bounds password guessing.
//
// Every BMC's password can be tried through several routes: the BMC's own
// paths (/Systems/ID, /Managers/ID, ...), the collections, unknown IDs, the
// session POST, and any other BMC's path (credentials that open vm-0 but
// not vm-1 are answered 404 on vm-1's path, 401 when they open nothing).
// So that no route escapes the count:
//
//   - every failure counts under the source's global key (guardKey), and
//     a failure on a path that names a BMC also counts under that BMC's key,
//     the key IPMI uses for it (one password, two protocols);
//   - a BMC's key locks the source out after the guard's Failures within
//     its Window, as IPMI does; the global key after globalFactor times as
//     many, so that a source locked out of one BMC (a wrong password for
//     one node) keeps using the other BMCs' paths with their right
//     passwords, as with IPMI;
//   - a source locked out under the global key is refused everywhere;
//     one locked out of a BMC (by Redfish or IPMI) is refused on that BMC's
//     paths and on every request that names no BMC (collections, unknown
//     IDs, the session POST), where it could otherwise go on guessing that
//     BMC's password.
//
// A source thus gets at most Failures guesses per window at one BMC
// through its own paths, and at most globalFactor×Failures guesses in all
// through every route together, however many BMCs there are.
//
// guardKey is the global key.
const guardKey = "redfish"

// globalFactor is how many BMCs' worth of failures the global key allows.
const globalFactor = 3

// lockedOut reports how much longer ip is refused a request naming the BMC
// filed under key ("" for a request naming none): see guardRule.
func (s *Server) lockedOut(idx *index, ip netip.Addr, key string) time.Duration {
	if key != "" {
		return s.guard.LockedAny(ip, []string{guardKey, key})
	}
	return max(s.guard.Locked(ip, guardKey), s.guard.LockedAny(ip, idx.keys))
}

// failed counts a failed login from ip, under the global key and under
// key, the BMC the request names ("" for none): see guardRule.
func (s *Server) failed(ip netip.Addr, key string) {
	if key != "" {
		if s.obs != nil {
			s.obs.AuthFailure(key)
		}
		if s.guard.Failed(ip, key) && s.obs != nil {
			s.obs.Lockout(key)
		}
	} else if s.obs != nil {
		s.obs.AuthFailure(guardKey)
	}
	if s.guard.FailedAt(ip, guardKey, globalFactor*s.guard.Failures()) && s.obs != nil {
		s.obs.Lockout(guardKey)
	}
}

// clientIP is the address a request came from (a TCP connection: it made
// the round trip, so a failure can be counted against it).
func clientIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// indexed is a served system with the principal of its credentials.
type indexed struct {
	System
	who principal
}

// guardKey is the key the BMC's failures count under, its IPMI endpoint's;
// "" for a system without one, whose failures count under the global key
// only.
func (sys indexed) guardKey() string {
	return sys.Endpoint
}

// index is the served systems by ID and by the principal that opens them,
// so that a request checks credentials against one system, not all.
type index struct {
	byID  map[string]indexed
	byWho map[principal][]System
	// keys are the served BMCs' guard keys.
	keys []string
}

// index returns the systems served now, indexed. The index is rebuilt when
// Config.Version says the systems changed, or on every request when there
// is no Version.
func (s *Server) index() *index {
	var v uint64
	if s.version != nil {
		v = s.version()
		s.idxMu.Lock()
		idx, ok := s.idx, s.idxVersion == v && s.idx != nil
		s.idxMu.Unlock()
		if ok {
			return idx
		}
	}
	idx := &index{byID: map[string]indexed{}, byWho: map[principal][]System{}}
	for _, sys := range s.systems() {
		if sys.ID == "" || sys.Machine == nil || sys.Username == "" || sys.Password == "" {
			continue
		}
		if _, dup := idx.byID[sys.ID]; dup {
			continue // of two systems with one ID the first counts
		}
		in := indexed{System: sys, who: s.principalOf(sys.Username, sys.Password)}
		idx.byID[sys.ID] = in
		if k := in.guardKey(); k != "" {
			idx.keys = append(idx.keys, k)
		}
		idx.byWho[in.who] = append(idx.byWho[in.who], sys)
	}
	if s.version != nil {
		s.idxMu.Lock()
		s.idx, s.idxVersion = idx, v
		s.idxMu.Unlock()
		s.sysMu.Lock()
		clear(s.sysCache) // systems may have gone: keep only what exists
		s.sysMu.Unlock()
	}
	return idx
}

// wrongCredentials is the 401's detail. It avoids the word "password":
// DMTF's Protocol Validator (SEC_NO_PRIV_INFO_IN_MSGS) fails an error
// message that contains the configured password, and the simulator's is
// the word "password".
const wrongCredentials = "The credentials are not valid for this service."

// checkCredentials reports whether user and password open any system, for
// session creation.
func (s *Server) checkCredentials(user, password string) (principal, bool) {
	who := s.principalOf(user, password)
	return who, len(s.index().byWho[who]) > 0
}
