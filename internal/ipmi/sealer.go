package ipmi

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"hash"
	"sync"

	"github.com/bougou/go-ipmi/pkg/types"
)

// sealer is an RMCP+ session's confidentiality and integrity state (IPMI
// v2.0 §13.28.4, §13.29), made once when the session opens: the HMAC keyed
// by K1 is reset rather than re-created, the AES block cipher keyed by K2
// reused, and the reply built in a buffer of the session's. go-ipmi's
// helpers create all three for every packet, which was most of a request's
// allocations. Suites 3 and 17 both use AES-CBC-128; the integrity HMAC is
// SHA-1 (96-bit code) or SHA-256 (128-bit code).
type sealer struct {
	mu      sync.Mutex
	mac     hash.Hash
	codeLen int
	block   cipher.Block
	sum     []byte
	plain   [maxDatagram]byte
	out     [maxDatagram + 64]byte
}

func newSealer(integ types.IntegrityAlg, k1, k2 []byte) (*sealer, error) {
	s := &sealer{}
	switch integ {
	case types.IntegrityAlg_HMAC_SHA1_96:
		s.mac, s.codeLen = hmac.New(sha1.New, k1), 12
	case types.IntegrityAlg_HMAC_SHA256_128:
		s.mac, s.codeLen = hmac.New(sha256.New, k1), 16
	default:
		return nil, errors.New("integrity algorithm not offered")
	}
	if len(k2) < 16 {
		return nil, errors.New("K2 too short for AES-128")
	}
	block, err := aes.NewCipher(k2[:16])
	if err != nil {
		return nil, err
	}
	s.block, s.sum = block, make([]byte, 0, s.mac.Size())
	return s, nil
}

// authentic checks the auth code that ends p against bytes 4 up to it.
// Callers hold mu.
func (s *sealer) authentic(p []byte, codeLen int) bool {
	if codeLen != s.codeLen {
		return false
	}
	end := len(p) - codeLen
	s.mac.Reset()
	s.mac.Write(p[4:end])
	s.sum = s.mac.Sum(s.sum[:0])
	return subtle.ConstantTimeCompare(s.sum[:codeLen], p[end:]) == 1
}

// open decrypts an IV-and-ciphertext payload into the sealer's buffer and
// strips the confidentiality trailer (§13.29: pad bytes 1, 2, ..., n, then
// n), which must be exactly that. Callers hold mu; the result is valid
// until they release it.
func (s *sealer) open(payload []byte) ([]byte, bool) {
	iv, ct := payload[:aes.BlockSize], payload[aes.BlockSize:]
	if len(ct) == 0 || len(ct)%aes.BlockSize != 0 || len(ct) > len(s.plain) {
		return nil, false
	}
	prev := iv
	for i := 0; i < len(ct); i += aes.BlockSize {
		blk := s.plain[i : i+aes.BlockSize]
		s.block.Decrypt(blk, ct[i:i+aes.BlockSize])
		subtle.XORBytes(blk, blk, prev)
		prev = ct[i : i+aes.BlockSize]
	}
	plain := s.plain[:len(ct)]
	n := int(plain[len(plain)-1])
	if n >= aes.BlockSize || n+1 > len(plain) {
		return nil, false
	}
	for i := range n {
		if plain[len(plain)-1-n+i] != byte(i+1) {
			return nil, false
		}
	}
	return plain[:len(plain)-1-n], true
}

// seal builds a whole RMCP+ datagram around msg: the session header for
// console session ID sid and sequence seq, the payload encrypted with a
// fresh IV, the integrity pad and the auth code. Callers hold mu; the
// result is valid until they release it.
func (s *sealer) seal(payloadType byte, sid, seq uint32, msg []byte) []byte {
	n := aes.BlockSize - 1 - len(msg)%aes.BlockSize // pad bytes, then their count
	ctLen := len(msg) + n + 1
	plen := aes.BlockSize + ctLen
	p := s.out[:16+plen]
	copy(p, []byte{0x06, 0x00, 0xFF, 0x07, 0x06, payloadType | flagEncrypted | flagAuthenticated})
	binary.LittleEndian.PutUint32(p[6:10], sid)
	binary.LittleEndian.PutUint32(p[10:14], seq)
	binary.LittleEndian.PutUint16(p[14:16], uint16(plen))
	iv := p[16 : 16+aes.BlockSize]
	_, _ = rand.Read(iv)
	ct := p[16+aes.BlockSize:]
	copy(ct, msg)
	for i := range n {
		ct[len(msg)+i] = byte(i + 1)
	}
	ct[len(ct)-1] = byte(n)
	prev := iv
	for i := 0; i < len(ct); i += aes.BlockSize {
		blk := ct[i : i+aes.BlockSize]
		subtle.XORBytes(blk, blk, prev)
		s.block.Encrypt(blk, blk)
		prev = blk
	}
	pad := (4 - (12+plen+2)%4) % 4
	for range pad {
		p = append(p, 0xFF)
	}
	p = append(p, byte(pad), 0x07)
	s.mac.Reset()
	s.mac.Write(p[4:])
	s.sum = s.mac.Sum(s.sum[:0])
	return append(p, s.sum[:s.codeLen]...)
}
