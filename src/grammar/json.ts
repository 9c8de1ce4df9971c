// Any JSON value (RFC 8259) as a GBNF grammar, for `--json` and response_format { type: "json_object" }.
// Whitespace between tokens is bounded, so a model cannot fill its answer with spaces.
export const JSON_VALUE_GBNF = String.raw`
root    ::= value
value   ::= object | array | string | number | "true" | "false" | "null"
object  ::= "{" ws ( member ( ws "," ws member )* ws )? "}"
member  ::= string ws ":" ws value
array   ::= "[" ws ( value ( ws "," ws value )* ws )? "]"
string  ::= "\"" char* "\""
char    ::= [^"\\\x00-\x1f] | "\\" ( ["\\/bfnrt] | "u" hex hex hex hex )
hex     ::= [0-9a-fA-F]
number  ::= "-"? ( "0" | [1-9] [0-9]{0,15} ) ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?
ws      ::= [ \t\n]{0,4}
`;

/** A JSON object at the top (what OpenAI's json_object mode promises). */
export const JSON_OBJECT_GBNF = JSON_VALUE_GBNF.replace('root    ::= value', 'root    ::= object');
