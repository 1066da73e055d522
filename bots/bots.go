// Package bots starts, by name, the actor types that ship with Parley (the
// -bots flag): each is a package of its own (bots/dice, bots/greeter)
// with a Start function, and one line in registry below makes it
// startable. README's "Adding an actor type" walks through writing one.
package bots

import (
	"fmt"
	"slices"
	"strings"

	"github.com/parleychat/parley/actors"
	"github.com/parleychat/parley/bots/dice"
	"github.com/parleychat/parley/bots/greeter"
)

// Starter starts one actor of a type in rooms on a node.
type Starter func(n *actors.Node, rooms []string) error

// registry is every actor type -bots can start: one line each.
var registry = map[string]Starter{
	"dice":    dice.Start,
	"greeter": greeter.Start,
}

// Names lists the actor types that can be started, sorted.
func Names() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Spec is one bot to start: its type and its rooms.
type Spec struct {
	Name  string
	Rooms []string
}

// Parse reads a -bots value: semicolon-separated name=room,room entries,
// e.g. "dice=games,fun;greeter=lobby".
func Parse(s string) ([]Spec, error) {
	var out []Spec
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, rooms, ok := strings.Cut(part, "=")
		name = strings.TrimSpace(name)
		if _, known := registry[name]; !known {
			return nil, fmt.Errorf("-bots: unknown bot %q (known: %s)", name, strings.Join(Names(), ", "))
		}
		sp := Spec{Name: name}
		for _, r := range strings.Split(rooms, ",") {
			if r = strings.TrimSpace(r); r != "" {
				sp.Rooms = append(sp.Rooms, r)
			}
		}
		if !ok || len(sp.Rooms) == 0 {
			return nil, fmt.Errorf("-bots: %q names no rooms; write %s=room1,room2", part, name)
		}
		out = append(out, sp)
	}
	return out, nil
}

// Start starts the bots of specs on n.
func Start(n *actors.Node, specs []Spec) error {
	for _, sp := range specs {
		start, ok := registry[sp.Name]
		if !ok {
			return fmt.Errorf("unknown bot %q (known: %s)", sp.Name, strings.Join(Names(), ", "))
		}
		if err := start(n, sp.Rooms); err != nil {
			return fmt.Errorf("bot %s: %w", sp.Name, err)
		}
	}
	return nil
}
