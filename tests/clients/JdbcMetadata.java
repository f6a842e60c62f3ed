// What a JDBC-based BI tool (DBeaver, Tableau's JDBC path, Metabase) asks on connect:
// DatabaseMetaData getSchemas/getTables/getColumns/getTypeInfo, plus a prepared query.
// Run by tests/it/jdbc.rs with the real pgJDBC driver:
//   java -cp /usr/share/java/postgresql.jar tests/clients/JdbcMetadata.java URL USER PASSWORD
// Prints one line per fact so the Rust test can assert exact values.
import java.sql.*;

public class JdbcMetadata {
    public static void main(String[] args) throws Exception {
        try (Connection c = DriverManager.getConnection(args[0], args[1], args[2])) {
            DatabaseMetaData md = c.getMetaData();
            System.out.println("product=" + md.getDatabaseProductName() + " " + md.getDatabaseMajorVersion());
            try (ResultSet rs = md.getSchemas()) {
                while (rs.next()) System.out.println("schema=" + rs.getString("TABLE_SCHEM"));
            }
            try (ResultSet rs = md.getTables(null, "public", "%", new String[] {"TABLE"})) {
                while (rs.next()) {
                    System.out.println("table=" + rs.getString("TABLE_NAME") + " " + rs.getString("TABLE_TYPE"));
                    if (rs.getString("REMARKS") != null) System.out.println("table_remark=" + rs.getString("TABLE_NAME") + ":" + rs.getString("REMARKS"));
                }
            }
            try (ResultSet rs = md.getColumns(null, "public", "sales", "%")) {
                while (rs.next()) {
                    System.out.println("column=" + rs.getString("COLUMN_NAME") + " " + rs.getString("TYPE_NAME") + " " + rs.getInt("DATA_TYPE"));
                    if (rs.getString("REMARKS") != null) System.out.println("column_remark=" + rs.getString("COLUMN_NAME") + ":" + rs.getString("REMARKS"));
                }
            }
            int types = 0;
            try (ResultSet rs = md.getTypeInfo()) {
                while (rs.next()) types++;
            }
            System.out.println("typeinfo=" + (types > 10 ? "many" : String.valueOf(types)));
            try (PreparedStatement ps = c.prepareStatement("SELECT count(*) FROM sales WHERE city = ?")) {
                ps.setString(1, "上海");
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    System.out.println("shanghai_orders=" + rs.getLong(1));
                }
            }
        }
    }
}
