// Command boltcheck lets the Rust tests ask Go's bbolt about a file
// (tests/go_bolt_interop.rs builds and runs it).
//
//	boltcheck check FILE   run tx.Check, print every bucket, key and value
//	                       as JSON, then change the file through bbolt (put
//	                       and delete a key in every bucket), reopen it and
//	                       check again; the content must come back the same
//	boltcheck create FILE  write a new database holding the JSON read from
//	                       stdin, through bbolt's own writer
//
// The JSON is {"<bucket name>": {"<key>": "<value>"}}, every string hex, so
// any bytes survive. Exits non-zero with a message on any problem.
package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

type content map[string]map[string]string

// probe is larger than an inline bucket may be, so putting it turns an
// inline bucket into one with its own pages, and deleting it turns it back.
var (
	probeKey   = []byte("boltcheck-probe")
	probeValue = bytes.Repeat([]byte{0xa5}, 5000)
)

func main() {
	if len(os.Args) != 3 {
		fail(errors.New("usage: boltcheck check|create FILE"))
	}
	var err error
	switch os.Args[1] {
	case "check":
		err = check(os.Args[2])
	case "create":
		err = create(os.Args[2])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "boltcheck:", err)
	os.Exit(1)
}

func open(path string) (*bolt.DB, error) {
	// Never wait for a lock: a test holding one should fail fast.
	return bolt.Open(path, 0600, &bolt.Options{Timeout: time.Second})
}

func check(path string) error {
	db, err := open(path)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	before, err := verify(db)
	if err != nil {
		db.Close()
		return err
	}
	if err := modify(db); err != nil {
		db.Close()
		return err
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}

	db, err = open(path)
	if err != nil {
		return fmt.Errorf("reopen after the update: %w", err)
	}
	defer db.Close()
	after, err := verify(db)
	if err != nil {
		return fmt.Errorf("after the update: %w", err)
	}
	a, _ := json.Marshal(before)
	b, _ := json.Marshal(after)
	if !bytes.Equal(a, b) {
		return errors.New("the content changed across a put and a delete")
	}
	_, err = os.Stdout.Write(append(a, '\n'))
	return err
}

// verify runs bbolt's consistency check and returns the whole content.
func verify(db *bolt.DB) (content, error) {
	out := content{}
	err := db.View(func(tx *bolt.Tx) error {
		var problems []error
		for e := range tx.Check() {
			problems = append(problems, e)
		}
		if len(problems) > 0 {
			return fmt.Errorf("tx.Check: %v", problems)
		}
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if b == nil {
				return fmt.Errorf("top-level key %q is not a bucket", name)
			}
			keys := map[string]string{}
			err := b.ForEach(func(k, v []byte) error {
				if v == nil {
					return fmt.Errorf("bucket %q: nested bucket %q", name, k)
				}
				keys[hex.EncodeToString(k)] = hex.EncodeToString(v)
				return nil
			})
			out[hex.EncodeToString(name)] = keys
			return err
		})
	})
	return out, err
}

// modify puts a key into every bucket (into a new one if there is none) in
// one transaction and removes it again in a second, so bbolt rewrites
// pages, frees the old ones and commits twice.
func modify(db *bolt.DB) error {
	var names [][]byte
	err := db.Update(func(tx *bolt.Tx) error {
		if err := tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			names = append(names, append([]byte(nil), name...))
			return nil
		}); err != nil {
			return err
		}
		if len(names) == 0 {
			if _, err := tx.CreateBucket(probeKey); err != nil {
				return err
			}
			names = append(names, probeKey)
		}
		for _, name := range names {
			if err := tx.Bucket(name).Put(probeKey, probeValue); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("update (put): %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range names {
			if bytes.Equal(name, probeKey) {
				return tx.DeleteBucket(name)
			}
			b := tx.Bucket(name)
			if !bytes.Equal(b.Get(probeKey), probeValue) {
				return fmt.Errorf("bucket %q: the probe key did not read back", name)
			}
			if err := b.Delete(probeKey); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("update (delete): %w", err)
	}
	return nil
}

func create(path string) error {
	var in content
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		return fmt.Errorf("reading the JSON on stdin: %w", err)
	}
	db, err := open(path)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for name, keys := range in {
			n, err := hex.DecodeString(name)
			if err != nil {
				return err
			}
			b, err := tx.CreateBucket(n)
			if err != nil {
				return err
			}
			for k, v := range keys {
				kb, err := hex.DecodeString(k)
				if err != nil {
					return err
				}
				vb, err := hex.DecodeString(v)
				if err != nil {
					return err
				}
				if err := b.Put(kb, vb); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return fmt.Errorf("writing: %w", err)
	}
	return db.Close()
}
