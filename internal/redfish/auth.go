package redfish

import (
	"crypto/hmac"
	"crypto/sha256"
	"net/http"
	"net/netip"
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
// Wrong credentials count against the client's address in the guard the
// IPMI endpoints use, under the BMC the path names (its IPMI password is
// the same), or under "redfish" for requests that name none; a locked-out
// address gets 429 with Retry-After before any credential is checked. A
// session token is 128 random bits: a wrong one is an expired session, not
// a guess, and does not count.
func (s *Server) authorize(q *request, sc scope, kind string) error {
	if sc == public {
		return nil
	}
	idx := s.index()
	named, found := indexed{}, false
	key := guardKey
	if sc == oneSystem {
		if named, found = idx.byID[q.r.PathValue("id")]; found {
			key = named.guardKey()
		}
	}
	ip := clientIP(q.r)
	if wait := s.guard.Locked(ip, key); wait > 0 {
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

// guardKey is what failures count under when a request names no BMC.
const guardKey = "redfish"

// failed counts a failed login from ip against key.
func (s *Server) failed(ip netip.Addr, key string) {
	if s.obs != nil {
		s.obs.AuthFailure(key)
	}
	if s.guard.Failed(ip, key) && s.obs != nil {
		s.obs.Lockout(key)
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

func (sys indexed) guardKey() string {
	if sys.Endpoint != "" {
		return sys.Endpoint
	}
	return guardKey
}

// index is the served systems by ID and by the principal that opens them,
// so that a request checks credentials against one system, not all.
type index struct {
	byID  map[string]indexed
	byWho map[principal][]System
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
		idx.byWho[in.who] = append(idx.byWho[in.who], sys)
	}
	if s.version != nil {
		s.idxMu.Lock()
		s.idx, s.idxVersion = idx, v
		s.idxMu.Unlock()
	}
	return idx
}

const wrongCredentials = "The user name or the password is wrong."

// checkCredentials reports whether user and password open any system, for
// session creation.
func (s *Server) checkCredentials(user, password string) (principal, bool) {
	who := s.principalOf(user, password)
	return who, len(s.index().byWho[who]) > 0
}
