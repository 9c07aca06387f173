package keys

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestREADMEListsEveryKey keeps the README's key table true: every string constant of this
// package that is a key must appear there.
func TestREADMEListsEveryKey(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "keys.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]string{"prefix": prefix}
	var missing []string
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			for i, name := range spec.(*ast.ValueSpec).Names {
				v := eval(spec.(*ast.ValueSpec).Values[i], values)
				values[name.Name] = v
				// keys contain a "/" or a "." (label/annotation keys); plain values don't
				if name.Name == "prefix" || !(strings.Contains(v, "/") || strings.Contains(v, ".")) {
					continue
				}
				if !strings.Contains(string(readme), "`"+v) {
					missing = append(missing, name.Name+" = "+v)
				}
			}
		}
	}
	if len(missing) > 0 {
		t.Errorf("README.md does not mention these keys:\n%s", strings.Join(missing, "\n"))
	}
}

// eval evaluates the constant expressions keys.go uses: string literals, names and +.
func eval(e ast.Expr, values map[string]string) string {
	switch x := e.(type) {
	case *ast.BasicLit:
		s, _ := strconv.Unquote(x.Value)
		return s
	case *ast.Ident:
		return values[x.Name]
	case *ast.BinaryExpr:
		return eval(x.X, values) + eval(x.Y, values)
	case *ast.ParenExpr:
		return eval(x.X, values)
	}
	return ""
}
